import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { pluginPath, runPlugin, scratchHome } from '../testing/plugin-process.js';
import { TestApiServer } from '../testing/test-api-server.js';

/** Returns the real kubectl binary on PATH. The test fails rather than skips when it is missing. */
function kubectlOnPath(): string {
  const found = spawnSync('sh', ['-c', 'command -v kubectl'], { encoding: 'utf8' });
  assert.equal(found.status, 0, 'kubectl is not on PATH; install it to run this test');
  return found.stdout.trim();
}

/** Returns a PATH whose first directory contains a `kubectl-provision` wrapper around the built plugin. */
function pathWithPlugin(): { env: NodeJS.ProcessEnv } {
  const home = scratchHome();
  const wrapper = join(home.dir, 'kubectl-provision');
  writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${pluginPath()}" "$@"\n`);
  chmodSync(wrapper, 0o755);
  return { env: { HOME: home.dir, PATH: `${home.dir}:${process.env['PATH'] ?? '/usr/bin:/bin'}` } };
}

describe('kubectl plugin discovery', () => {
  const kubectl = kubectlOnPath();

  it('kubectl provision cas --help', () => {
    const { env } = pathWithPlugin();
    const run = spawnSync(kubectl, ['provision', 'cas', '--help'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /Usage: kubectl provision cas \[options\] <NAME>/);
    for (const flag of ['--namespace', '--kubeconfig', '--context', '--dcap-api', '--verbose', '--dry-run', '--output', '--no-wait', '--timeout', '--image', '--snapshot-interval', '--storage-class', '--service-type']) {
      assert.ok(run.stdout.includes(flag), `--help does not mention ${flag}`);
    }
    assert.match(run.stdout, /\(default: "5m"\)/);
    assert.match(run.stdout, /00000000000000000000000000000000/);
  });

  it('kubectl provision cas x --dry-run -o yaml', () => {
    const { env } = pathWithPlugin();
    const run = spawnSync(kubectl, ['provision', 'cas', 'x', '--dry-run', '-o', 'yaml'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    const objects = parseAllDocuments(run.stdout).map((document) => document.toJS() as { kind: string; metadata: { name: string } });
    assert.ok(objects.some((object) => object.kind === 'StatefulSet' && object.metadata.name === 'x'));
    assert.ok(objects.some((object) => object.kind === 'DaemonSet' && object.metadata.name === 'x-backup'));
    assert.match(run.stderr, /warning: no --dcap-api key given/);
  });

  it('kubectl applies the dry-run output', async () => {
    const { env } = pathWithPlugin();
    const dryRun = spawnSync(kubectl, ['provision', 'cas', 'mycas', '-n', 'default', '--dry-run', '-o', 'yaml', '--dcap-api', 'test-key'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(dryRun.status, 0, dryRun.stderr);
    const printed = parseAllDocuments(dryRun.stdout).map((document) => document.toJS());

    const api = await TestApiServer.start();
    try {
      api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
      const home = scratchHome(api.kubeconfig('default'));
      // Asynchronous, because this process serves the API that kubectl calls.
      const applied = await runPlugin(['apply', '--server-side', '--validate=false', '-f', '-'], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath }, [kubectl], dryRun.stdout);
      assert.equal(applied.code, 0, applied.stderr);
      assert.match(applied.stdout, /statefulset\.apps\/mycas serverside-applied/);
      const sent = api.requests.filter((request) => request.method === 'PATCH').map((request) => request.body);
      assert.deepEqual(sent, printed);
      for (const request of api.requests.filter((candidate) => candidate.method === 'PATCH')) {
        assert.equal(request.contentType, 'application/apply-patch+yaml');
      }
    } finally {
      await api.close();
    }
  });

  it('kubectl plugin list finds the plugin', () => {
    const { env } = pathWithPlugin();
    const run = spawnSync(kubectl, ['plugin', 'list'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.match(run.stdout, /kubectl-provision/);
  });
});
