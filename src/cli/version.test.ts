import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { casCliPath, repoRoot } from '../testing/paths.js';

describe('cas --version', () => {
  it('prints the package version', () => {
    const expected = (JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
    const run = spawnSync(process.execPath, [casCliPath(), '--version'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), expected);
  });
});
