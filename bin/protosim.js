#!/usr/bin/env node
// The protosim command. The TypeScript sources are built to dist/ by `npm install` (prepare).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('protosim: dist/ is missing; run `npm install` (or `npm run build`) first\n');
  process.exit(3);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
