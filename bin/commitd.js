#!/usr/bin/env node
// `commitd`: the command line (src/cli/main.ts), compiled into dist/ by `npm run build`.
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2));
