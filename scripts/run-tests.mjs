// Runs every compiled test file under dist/ with Node's test runner.
// Node 20's `--test` takes no globs, so this script finds the files itself.
// Pass file-name fragments to run a subset: `node scripts/run-tests.mjs audit store`.
// Every test has a 5-minute limit, so a hung test fails instead of stalling CI.
// CAS_TEST_DIST names another build output directory (default: dist).
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

function findTests(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTests(path));
    else if (entry.name.endsWith('.test.js')) found.push(path);
  }
  return found;
}

const filters = process.argv.slice(2);
const distSrc = join(process.env.CAS_TEST_DIST ?? 'dist', 'src');
const files = findTests(distSrc)
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files found under ${distSrc}${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
  process.exit(1);
}
console.error(`running ${files.length} test files: ${files.map((f) => relative(distSrc, f)).join(' ')}`);

const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
