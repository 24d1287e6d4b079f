// The service's entry point as a file (`node dist/src/main.js`: the
// container's command, the tests' service); `commitd serve` runs the same.

import { serve } from './serve.js';

void serve();
