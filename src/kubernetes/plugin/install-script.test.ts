import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../../testing/paths.js';
import { pluginPath } from '../testing/plugin-process.js';

/** Returns the output directory this test was compiled into (dist, or another --outDir). */
function distDir(): string {
  const fromRoot = relative(repoRoot(), pluginPath());
  return fromRoot.split('/')[0]!;
}

function install(args: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync('bash', [join(repoRoot(), 'install.sh'), ...args], { encoding: 'utf8', env, timeout: 50_000 });
}

describe('install.sh', () => {
  it('--help lists every option', () => {
    const run = install(['--help']);
    assert.equal(run.status, 0, run.stderr);
    for (const option of ['--plugin', '--reconcile', '--verbose', '--bin-dir', '--dist', '--no-build', '--from-npm']) {
      assert.ok(run.stdout.includes(option), `--help does not mention ${option}`);
    }
  });

  it('rejects an unknown option', () => {
    const run = install(['--plugins']);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /unknown option --plugins/);
  });

  it('installs the plugin idempotently', () => {
    const binDir = mkdtempSync(join(tmpdir(), 'install-sh-'));
    const env = { ...process.env, PATH: `${binDir}:${process.env['PATH'] ?? ''}` };
    const args = ['--reconcile', '--plugin', '--verbose', '--bin-dir', binDir, '--dist', distDir(), '--no-build'];

    const first = install(args, env);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /kubectl-provision installed/);
    const link = join(binDir, 'kubectl-provision');
    assert.equal(readlinkSync(link), pluginPath());

    const second = install(args, env);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, /kubectl-provision is already installed/);
    assert.equal(readlinkSync(link), pluginPath());

    const help = spawnSync(link, ['cas', '--help'], { encoding: 'utf8', env });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /kubectl provision cas/);
  });

  it('replaces a foreign link only with --reconcile', () => {
    const binDir = mkdtempSync(join(tmpdir(), 'install-sh-'));
    const other = join(binDir, 'other-plugin.js');
    writeFileSync(other, '#!/bin/sh\n');
    const link = join(binDir, 'kubectl-provision');
    symlinkSync(other, link);

    const refused = install(['--plugin', '--bin-dir', binDir, '--dist', distDir(), '--no-build']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /already exists and is not a link to .*; pass --reconcile to replace it/);
    assert.equal(readlinkSync(link), other);

    const reconciled = install(['--plugin', '--reconcile', '--bin-dir', binDir, '--dist', distDir(), '--no-build']);
    assert.equal(reconciled.status, 0, reconciled.stderr);
    assert.match(reconciled.stderr, /kubectl-provision reconciled/);
    assert.equal(readlinkSync(link), pluginPath());
    assert.equal(basename(dirname(dirname(readlinkSync(link)))), 'kubernetes');
  });

  it('without --plugin installs nothing', () => {
    const run = install(['--reconcile']);
    assert.equal(run.status, 1);
    assert.match(run.stderr, /nothing to install: pass --plugin/);
  });
});
