import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULTS, FILE_NAMES } from '../../config/defaults.js';
import { runCas, startCasProcess, tempDir } from '../../server/testing/cas-process.js';

describe('cas serve', () => {
  it('serves on the embedded defaults', async () => {
    // HOME moves ~/.cas-platform into the temporary directory; the working directory contains ./cas-data.
    const home = tempDir('serve-home');
    const cwd = tempDir('serve-cwd');
    const cas = await startCasProcess({ args: [], cwd, env: { HOME: home } });
    try {
      assert.equal(cas.url, `https://${DEFAULTS.listenHost}:${DEFAULTS.listenPort}`);
      assert.ok(existsSync(join(cwd, 'cas-data', FILE_NAMES.database)));
      assert.ok(existsSync(join(cwd, 'cas-data', FILE_NAMES.keyStore)));
      assert.ok(existsSync(join(cwd, 'cas-data', DEFAULTS.auditSubdir, FILE_NAMES.auditLog)));
      assert.ok(existsSync(join(home, '.cas-platform', FILE_NAMES.platformKey)));
      assert.ok(cas.logLines.every((line) => line.includes('"casMode":"simulation"')), 'every log line names the simulation mode');
    } finally {
      assert.equal(await cas.stop(), 0, cas.stderr() + cas.logLines.join('\n'));
    }
    assert.ok(cas.logLines.some((line) => line.includes('"msg":"CAS stopped"')));
  });

  it('rejects invalid settings naming the key', async () => {
    const cwd = tempDir('serve-bad');
    const result = await runCas(['serve', '--mode', 'sgx', '--snapshot-interval', '0', '--data-dir', join(cwd, 'data')], {}, { cwd });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /mode \(--mode\)/);
    assert.match(result.stderr, /snapshotIntervalSeconds \(--snapshot-interval\)/);
    assert.ok(!existsSync(join(cwd, 'data')), 'nothing is created for invalid settings');
  });

  it('documents every flag in --help', async () => {
    const result = await runCas(['serve', '--help'], {});
    assert.equal(result.code, 0);
    for (const flag of ['--data-dir', '--listen', '--platform-dir', '--mode', '--snapshot-interval', '--snapshot-dir', '--no-snapshots', '--audit-log', '--provisioning-token-file']) {
      assert.ok(result.stdout.includes(flag), `--help lacks ${flag}`);
    }
  });

  it('uses a token from --provisioning-token-file', async () => {
    const root = tempDir('serve-token');
    const tokenFile = join(root, 'token');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(tokenFile, 'deployer-chosen-token-0123456789\n', { mode: 0o600 });
    const cas = await startCasProcess({ args: ['--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--provisioning-token-file', tokenFile] });
    try {
      assert.ok(!existsSync(join(root, 'data', FILE_NAMES.provisioningToken)), 'no generated token file when the deployer supplies one');
      const env = { CAS_HOME: join(root, 'home') };
      const wrong = await runCas(['provision', '--cas', cas.url, '--token', 'another-token-0123456789abcdef'], env);
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /provisioning token is wrong/);
      const right = await runCas(['provision', '--cas', cas.url, '--token-file', tokenFile], env);
      assert.equal(right.code, 0, right.stderr);
      assert.ok(!cas.logLines.some((line) => line.includes('deployer-chosen-token')), 'the token must not appear in the log');
    } finally {
      assert.equal(await cas.stop(), 0);
    }
  });

  it('names --listen when the port is busy', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const root = tempDir('serve-busy');
      const args = ['serve', '--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--listen', `127.0.0.1:${port}`, '--no-metrics'];
      const result = await runCas(args, {});
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE`));
      assert.match(result.stderr, /choose another address with --listen HOST:PORT/);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
