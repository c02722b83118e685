#!/usr/bin/env node
// Runs the compiled CLI (npm run build makes dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/harness/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write('klp-harness: dist/ is missing; run `npm run build` first\n');
  process.exit(3);
}
const { main } = await import(cli.href);
// Exit with the code once main is done: a handle left open on an error path
// (a dropped SSH connection, a lock holder's pipe) must not keep a finished
// run alive. stdout and stderr are synchronous for files and pipes on Linux.
process.exit(await main(process.argv.slice(2)));
