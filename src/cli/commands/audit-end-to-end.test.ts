import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FILE_NAMES } from '../../config/defaults.js';
import { EXIT } from '../../errors/exit-codes.js';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../../server/testing/cas-process.js';

/**
 * `cas audit verify` on the log that a real `cas serve` process writes, with the CAS certificate and head
 * fetched over `--cas URL` as the CAS owner.
 */
describe('cas audit verify against cas serve', () => {
  const root = tempDir('audit-e2e');
  const dataDir = join(root, 'data');
  const auditDir = join(dataDir, 'audit');
  const auditLog = join(auditDir, FILE_NAMES.auditLog);
  const ownerEnv = { CAS_HOME: join(root, 'owner-home') };
  const strangerEnv = { CAS_HOME: join(root, 'stranger-home') };
  let cas: CasProcess;

  before(async () => {
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0'] });
    const token = readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
    const provisioned = await runCas(['provision', '--cas', cas.url, '--token', token], ownerEnv);
    assert.equal(provisioned.code, 0, provisioned.stderr);
    for (const env of [ownerEnv, strangerEnv]) {
      const attested = await runCas(['attest', '--cas', cas.url, '--accept-simulation'], env);
      assert.equal(attested.code, 0, attested.stderr);
    }
  });

  after(async () => {
    await cas?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('live log verifies with --cas', async () => {
    const result = await runCas(['audit', 'verify', auditDir, '--cas', cas.url, '-o', 'json'], ownerEnv);
    assert.equal(result.code, EXIT.OK, result.stderr);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; counts: Record<string, number>; head: { seq: number } };
    assert.equal(parsed.ok, true);
    assert.equal(parsed.counts['cas.started'], 1);
    assert.equal(parsed.counts['cas.provisioned'], 1);
  });

  test('live log verifies with the pinned certificate', async () => {
    const pinnedDir = join(ownerEnv.CAS_HOME, 'pinned');
    const [pinned] = readdirSync(pinnedDir);
    assert.ok(pinned !== undefined, 'cas attest pinned a certificate');
    const result = await runCas(['audit', 'verify', auditLog, '--cas-cert', join(pinnedDir, pinned)], {});
    assert.equal(result.code, EXIT.OK, result.stderr);
  });

  test('copy without its last line is truncated', async () => {
    const lines = readFileSync(auditLog, 'utf8').slice(0, -1).split('\n');
    assert.ok(lines.length >= 2, `expected at least two entries, found ${lines.length}`);
    const copy = join(root, 'copy.log');
    writeFileSync(copy, lines.slice(0, -1).join('\n') + '\n');
    const result = await runCas(['audit', 'verify', copy, '--cas', cas.url], ownerEnv);
    assert.equal(result.code, EXIT.AUDIT_TRUNCATED, result.stderr);
  });

  test('head is for the CAS owner only', async () => {
    const result = await runCas(['audit', 'verify', auditLog, '--cas', cas.url], strangerEnv);
    assert.notEqual(result.code, EXIT.OK);
    assert.match(result.stderr, /owner/);
  });

  test('restart refuses a log behind the database head', async () => {
    await cas.stop();
    const stopped = await runCas(['audit', 'verify', auditLog], {});
    assert.equal(stopped.code, EXIT.OK, stopped.stderr);
    assert.match(stopped.stdout, /cas\.stopped\s+1/);

    const lines = readFileSync(auditLog, 'utf8').slice(0, -1).split('\n');
    writeFileSync(auditLog, lines.slice(0, -1).join('\n') + '\n');
    await assert.rejects(
      startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0'] }),
      /AUDIT_TRUNCATED|acknowledged entries are missing/,
    );
  });
});
