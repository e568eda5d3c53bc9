// The fault suite's schedules (test/faults/suite.ts), run by `npm run test:faults` (bench/faults.ts)
// as one node:test file. Not part of `npm test` yet: the suite still finds rare violations
// (issue 20 stays open until it is green run after run); its checker's own tests are.

import { defineFaultSuite } from '../test/faults/suite';

defineFaultSuite(0);
