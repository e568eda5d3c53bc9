// Share 2 of 5 of the fault suite's schedules in `npm test` (test/faults/suite.ts).
import { defineFaultSuite } from './suite';

defineFaultSuite(1);
