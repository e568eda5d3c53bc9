// The fault suite's schedules (test/faults/suite.ts) in one file, run by `npm run test:faults` (bench/faults.ts)
// as one node:test file, for long runs (`--schedules 1000`). `npm test` runs 50 random
// schedules and the regression seeds dealt over test/faults/schedules-{1..5}.test.ts.

import { defineFaultSuite } from '../test/faults/suite';

defineFaultSuite(0);
