// Share 3 of the fault suite's schedules (see suite.ts).

import { defineFaultSuite } from './suite';

defineFaultSuite(2);
