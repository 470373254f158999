import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCasError } from '../errors/cas-error.js';
import { silentLogger } from '../logging/logger.js';
import { AuditLog } from './audit-log.js';
import { AUDIT_EVENTS, GENESIS_HASH, parseAuditLine, type AuditEntry } from './entry.js';
import { auditHmac } from './hmac.js';
import { createAuditTestIdentity, exampleOfEveryEvent, makeTempDir, sampleEvents, saveAuditTestIdentity, type AuditTestIdentity } from './test-support.js';
import { verifyAuditLog } from './verify.js';

let identity: AuditTestIdentity;
const directories: string[] = [];

before(async () => {
  identity = await createAuditTestIdentity();
});

after(async () => {
  await Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true })));
});

async function tempLogPath(name: string): Promise<string> {
  const directory = await makeTempDir(name);
  directories.push(directory);
  return join(directory, 'audit', 'cas_audit.log');
}

async function openLog(path: string, extra: { maxFileBytes?: number; head?: { seq: number; hash: string } } = {}): Promise<AuditLog> {
  return AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger(), ...extra });
}

async function readEntries(path: string): Promise<AuditEntry[]> {
  const text = await readFile(path);
  return text
    .toString('utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const parsed = parseAuditLine(Buffer.from(line));
      assert.ok(parsed.ok, `line does not parse: ${line.slice(0, 80)}`);
      return parsed.entry;
    });
}

function sessionRead(n: number) {
  return { event: 'session.read', actor: { kind: 'client', keyHash: 'e'.repeat(64) }, target: { session: `s/${n}` }, outcome: 'success', details: {} } as const;
}

describe('AuditLog', () => {
  test('append writes a verifiable chain', async () => {
    const path = await tempLogPath('append');
    const log = await openLog(path);
    assert.deepEqual(log.head(), { seq: 0, hash: GENESIS_HASH });

    const heads = [];
    for (const event of sampleEvents((value) => log.hmac(value))) heads.push(await log.append(event));
    await log.close();

    const entries = await readEntries(path);
    assert.deepEqual(
      entries.map((entry) => entry.seq),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(entries[0]!.prev, GENESIS_HASH);
    assert.deepEqual(entries[0]!.chain, identity.signer.certificateChainPem);
    assert.equal(entries[1]!.chain, undefined);
    assert.deepEqual(heads.at(-1), { seq: 7, hash: entries[6]!.hash });

    const result = await verifyAuditLog({ files: [path], casCertificatePem: identity.casCertificatePem, expectedHead: heads.at(-1)! });
    assert.deepEqual(result.problems, []);
    assert.equal(result.ok, true);
    assert.equal(result.counts['cas.started'], 1);
    assert.equal(result.counts['service.attested'], 1);
  });

  test('append accepts every event type', async () => {
    const path = await tempLogPath('every-event');
    const log = await openLog(path);
    const examples = exampleOfEveryEvent((value) => log.hmac(value));
    for (const event of AUDIT_EVENTS) await log.append(examples[event]);
    await log.close();

    const result = await verifyAuditLog({ files: [path], casCertificatePem: identity.casCertificatePem });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(Object.keys(result.counts), [...AUDIT_EVENTS]);
    assert.ok(Object.values(result.counts).every((count) => count === 1));
    const text = await readFile(path, 'utf8');
    assert.equal(text.includes('"configuration"'), false, 'the released configuration appears only as its HMAC');
  });

  test('append carries the chain on every cas.started', async () => {
    const path = await tempLogPath('started');
    const log = await openLog(path);
    await log.append(sessionRead(1));
    await log.append({ event: 'cas.started', actor: { kind: 'cas' }, outcome: 'success', details: { mode: 'hardware', version: '1.0.0' } });
    await log.close();

    const entries = await readEntries(path);
    assert.ok(entries[0]!.chain);
    assert.deepEqual(entries[1]!.chain, identity.signer.certificateChainPem);
  });

  test('concurrent appends share fsyncs and stay gap-free', async () => {
    const path = await tempLogPath('concurrent');
    const log = await openLog(path);
    const count = 400;
    const heads = await Promise.all(Array.from({ length: count }, (_, i) => log.append(sessionRead(i))));
    const stats = log.stats();
    await log.close();

    assert.deepEqual(
      heads.map((head) => head.seq),
      Array.from({ length: count }, (_, i) => i + 1),
      'each append resolves with the seq of its own entry, in call order',
    );
    assert.equal(stats.appended, count);
    assert.ok(stats.batches < count, `expected fewer fsync batches than appends, got ${stats.batches}`);

    const entries = await readEntries(path);
    assert.deepEqual(
      entries.map((entry) => entry.target?.session),
      Array.from({ length: count }, (_, i) => `s/${i}`),
    );
    const result = await verifyAuditLog({ files: [path], expectedHead: heads.at(-1)! });
    assert.equal(result.ok, true, JSON.stringify(result.problems));
  });

  test('invalid entry rejects without taking a seq', async () => {
    const path = await tempLogPath('invalid');
    const log = await openLog(path);
    const bad = { event: 'session.read', actor: { kind: 'client', keyHash: 'not-a-hash' }, outcome: 'success', details: {} } as never;
    const results = await Promise.allSettled([log.append(sessionRead(1)), log.append(bad), log.append(sessionRead(2))]);
    await log.close();

    assert.equal(results[0].status, 'fulfilled');
    assert.equal(results[1].status, 'rejected');
    assert.equal(results[1].status === 'rejected' && isCasError(results[1].reason, 'INTERNAL'), true);
    assert.equal(results[2].status === 'fulfilled' ? results[2].value.seq : undefined, 2);
    const result = await verifyAuditLog({ files: [path] });
    assert.equal(result.ok, true);
  });

  test('secret-bearing free-form fields are rejected by the schema', async () => {
    const path = await tempLogPath('schema');
    const log = await openLog(path);
    const withMessage = { ...sessionRead(1), details: { message: 'password=hunter2' } } as never;
    const withExtraTop = { ...sessionRead(1), note: 'free text' } as never;
    await assert.rejects(log.append(withMessage), (error: unknown) => isCasError(error, 'INTERNAL'));
    await assert.rejects(log.append(withExtraTop), (error: unknown) => isCasError(error, 'INTERNAL'));
    await log.close();
  });

  test('reopen continues the chain', async () => {
    const path = await tempLogPath('reopen');
    let log = await openLog(path);
    await log.append(sessionRead(1));
    await log.append(sessionRead(2));
    const head = log.head();
    await log.close();

    log = await openLog(path, { head });
    assert.deepEqual(log.head(), head);
    assert.equal(log.repair, undefined);
    await log.append(sessionRead(3));
    await log.close();

    const entries = await readEntries(path);
    assert.equal(entries[2]!.prev, head.hash);
    assert.equal((await verifyAuditLog({ files: [path] })).ok, true);
  });

  test('open repairs a partial last line', async () => {
    const path = await tempLogPath('repair');
    let log = await openLog(path);
    await log.append(sessionRead(1));
    await log.append(sessionRead(2));
    const acknowledged = log.head();
    await log.close();

    // A torn write: the first half of a further line, as a crash in the middle of write(2) leaves it.
    const lines = (await readFile(path, 'utf8')).split('\n');
    const torn = lines[1]!.slice(0, Math.floor(lines[1]!.length / 2));
    await appendFile(path, torn);
    const before = await verifyAuditLog({ files: [path] });
    assert.deepEqual(
      before.problems.map((problem) => [problem.code, problem.line]),
      [['AUDIT_PARTIAL_LINE', 3]],
    );

    log = await openLog(path, { head: acknowledged });
    assert.deepEqual(log.repair, { file: path, truncatedBytes: Buffer.byteLength(torn) });
    const saved = (await readdir(dirname(path))).filter((name) => name.startsWith('cas_audit.log.partial-'));
    assert.equal(saved.length, 1);
    assert.equal(await readFile(join(dirname(path), saved[0]!), 'utf8'), torn);
    assert.deepEqual(log.head(), acknowledged);
    await log.append(sessionRead(3));
    await log.close();
    const afterRepair = await verifyAuditLog({ files: [path], expectedHead: { seq: 3, hash: log.head().hash } });
    assert.equal(afterRepair.ok, true, JSON.stringify(afterRepair.problems));
  });

  test('open fails when the file is behind the stored head', async () => {
    const path = await tempLogPath('behind');
    const log = await openLog(path);
    await log.append(sessionRead(1));
    const first = log.head();
    await log.append(sessionRead(2));
    const stored = log.head();
    await log.close();

    const lines = (await readFile(path, 'utf8')).split('\n');
    await writeFile(path, lines[0] + '\n');
    await assert.rejects(openLog(path, { head: stored }), (error: unknown) => isCasError(error, 'AUDIT_TRUNCATED'));
    await assert.rejects(openLog(path, { head: { seq: 1, hash: 'f'.repeat(64) } }), (error: unknown) => isCasError(error, 'AUDIT_INTEGRITY'));
    const reopened = await openLog(path, { head: first });
    await reopened.close();
  });

  test('open behind the stored head changes nothing', async () => {
    const path = await tempLogPath('behind-partial');
    const log = await openLog(path);
    await log.append(sessionRead(1));
    await log.append(sessionRead(2));
    const stored = log.head();
    await log.close();

    // The final newline is lost: the last acknowledged entry now looks like a partial line.
    const damaged = (await readFile(path)).subarray(0, -1);
    await writeFile(path, damaged);
    await assert.rejects(openLog(path, { head: stored }), (error: unknown) => isCasError(error, 'AUDIT_TRUNCATED'));
    assert.deepEqual(await readFile(path), damaged);
  });

  test('open accepts a file ahead of the stored head', async () => {
    const path = await tempLogPath('ahead');
    const log = await openLog(path);
    await log.append(sessionRead(1));
    const stored = log.head();
    await log.append(sessionRead(2));
    await log.close();

    const reopened = await openLog(path, { head: stored });
    assert.equal(reopened.head().seq, 2);
    await reopened.close();
    await assert.rejects(openLog(path, { head: { seq: 1, hash: 'f'.repeat(64) } }), (error: unknown) => isCasError(error, 'AUDIT_INTEGRITY'));
  });

  test('open rejects a corrupted last entry', async () => {
    const path = await tempLogPath('corrupt');
    const log = await openLog(path);
    await log.append(sessionRead(1));
    await log.close();
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('"s/1"', '"s/2"'));
    await assert.rejects(openLog(path), (error: unknown) => isCasError(error, 'AUDIT_INTEGRITY'));
  });

  test('open rejects a key that does not match the chain', async () => {
    const other = await createAuditTestIdentity();
    const path = await tempLogPath('signer');
    await assert.rejects(
      AuditLog.open({
        path,
        signer: { privateKey: other.signer.privateKey, certificateChainPem: identity.signer.certificateChainPem },
        hmacKey: identity.hmacKey,
        logger: silentLogger(),
      }),
      (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'),
    );
  });

  test('failed write rejects pending and later appends', async () => {
    // /dev/full accepts open(2) and fails every write(2) with ENOSPC: a real failing disk.
    const log = await AuditLog.open({ path: '/dev/full', signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger() });
    const results = await Promise.allSettled([log.append(sessionRead(1)), log.append(sessionRead(2)), log.append(sessionRead(3))]);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      const reason = result.status === 'rejected' ? (result.reason as unknown) : undefined;
      assert.equal(isCasError(reason, 'AUDIT_APPEND_FAILED'), true, String(reason));
    }
    await assert.rejects(log.append(sessionRead(4)), (error: unknown) => isCasError(error, 'AUDIT_APPEND_FAILED'));
    assert.deepEqual(log.head(), { seq: 0, hash: GENESIS_HASH });
    await log.close();
  });

  test('expired audit certificate is rejected', async () => {
    const path = await tempLogPath('expired');
    const afterExpiry = new Date(Date.now() + 365 * 86_400_000);
    await assert.rejects(
      AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger(), now: () => afterExpiry }),
      (error: unknown) => isCasError(error, 'AUDIT_APPEND_FAILED'),
    );
  });

  test('appends fail once the certificate expires', async () => {
    const path = await tempLogPath('expires');
    let clock = new Date();
    const log = await AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger(), now: () => clock });
    await log.append(sessionRead(1));
    clock = new Date(Date.now() + 365 * 86_400_000);
    await assert.rejects(log.append(sessionRead(2)), (error: unknown) => isCasError(error, 'AUDIT_APPEND_FAILED'));
    await assert.rejects(log.append(sessionRead(3)), (error: unknown) => isCasError(error, 'AUDIT_APPEND_FAILED'));
    assert.equal(log.head().seq, 1);
    await log.close();
    assert.equal((await verifyAuditLog({ files: [path] })).ok, true);
  });

  test('closed log rejects appends', async () => {
    const path = await tempLogPath('closed');
    const log = await openLog(path);
    await log.close();
    await assert.rejects(log.append(sessionRead(1)), (error: unknown) => isCasError(error, 'AUDIT_APPEND_FAILED'));
  });

  test('rotation starts each file with log.rotated', async () => {
    const path = await tempLogPath('rotate');
    let log = await openLog(path, { maxFileBytes: 4096 });
    for (let i = 0; i < 40; i++) await log.append(sessionRead(i));
    const head = log.head();
    await log.close();

    const names = (await readdir(dirname(path))).sort();
    assert.ok(names.length >= 3, `expected several files, got ${names.join(', ')}`);
    assert.ok(names.includes('cas_audit.log'));
    const rotatedNames = names.filter((name) => name !== 'cas_audit.log');
    assert.match(rotatedNames[0]!, /^cas_audit\.log\.000000000001-\d{12}$/);
    for (const name of [...rotatedNames.slice(1), 'cas_audit.log']) {
      const [first] = await readEntries(join(dirname(path), name));
      assert.equal(first!.event, 'log.rotated', `first entry of ${name}`);
      assert.deepEqual(first!.chain, identity.signer.certificateChainPem);
    }

    const whole = await verifyAuditLog({ files: [dirname(path)], casCertificatePem: identity.casCertificatePem, expectedHead: head });
    assert.equal(whole.ok, true, JSON.stringify(whole.problems));
    assert.equal(whole.head?.seq, head.seq);

    // Reopening continues in the active file, and the chain still verifies.
    log = await openLog(path, { maxFileBytes: 4096, head });
    await log.append(sessionRead(99));
    await log.close();
    assert.equal((await verifyAuditLog({ files: [dirname(path)] })).ok, true);
  });

  test('reopen after a crash between rename and first write', async () => {
    const path = await tempLogPath('rotate-crash');
    let log = await openLog(path);
    await log.append(sessionRead(1));
    await log.append(sessionRead(2));
    await log.close();
    await rename(path, `${path}.000000000001-000000000002`);
    await writeFile(path, '');

    log = await openLog(path);
    await log.append(sessionRead(3));
    await log.close();
    const [first] = await readEntries(path);
    assert.equal(first!.event, 'log.rotated');
    assert.equal(first!.seq, 3);
    assert.equal((await verifyAuditLog({ files: [dirname(path)] })).ok, true);
  });

  test('kill -9 during appends loses no acknowledged entry', async (t) => {
    const path = await tempLogPath('kill');
    const identityFile = await saveAuditTestIdentity(identity, dirname(dirname(path)));
    const child = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'test-writer-process.js'), identityFile, path, '65536'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const killAfter = 2000 + Math.floor(Math.random() * 2000);
    let killScheduled = false;
    const acknowledged = await new Promise<number[]>((resolve, reject) => {
      const seqs: number[] = [];
      let buffered = '';
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (signal === 'SIGKILL') resolve(seqs);
        else reject(new Error(`writer exited with code ${code} before it was killed`));
      });
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) if (line.startsWith('ack ')) seqs.push(Number(line.slice(4)));
        if (seqs.length >= killAfter && !killScheduled) {
          killScheduled = true;
          // A random delay lets the kill land in any phase: signing, write(2), fsync or idle.
          setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 20));
        }
      });
    });
    assert.ok(acknowledged.length >= killAfter);
    const maxAcknowledged = Math.max(...acknowledged);

    const result = await verifyAuditLog({ files: [dirname(path)], casCertificatePem: identity.casCertificatePem });
    const codes = result.problems.map((problem) => problem.code);
    assert.ok(codes.length === 0 || (codes.length === 1 && codes[0] === 'AUDIT_PARTIAL_LINE'), JSON.stringify(result.problems));
    t.diagnostic(`${acknowledged.length} acknowledged, head ${result.head?.seq}, problems: ${codes.join(', ') || 'none'}`);
    assert.ok((result.head?.seq ?? 0) >= maxAcknowledged, `head ${result.head?.seq} < acknowledged ${maxAcknowledged}`);

    const reopened = await openLog(path, { maxFileBytes: 65536 });
    assert.ok(reopened.head().seq >= maxAcknowledged);
    assert.equal(reopened.repair !== undefined, codes.includes('AUDIT_PARTIAL_LINE'));
    await reopened.append(sessionRead(0));
    await reopened.close();

    const repaired = await verifyAuditLog({ files: [dirname(path)], casCertificatePem: identity.casCertificatePem });
    assert.equal(repaired.ok, true, JSON.stringify(repaired.problems));
    assert.equal(repaired.head?.seq, reopened.head().seq);
  });
});

describe('auditHmac', () => {
  test('same key and value give the same HMAC', () => {
    const key = Buffer.alloc(32, 1);
    assert.equal(auditHmac(key, 'value'), auditHmac(key, 'value'));
    assert.match(auditHmac(key, 'value'), /^hmac-sha256:[0-9a-f]{64}$/);
  });

  test('another key gives another HMAC', () => {
    assert.notEqual(auditHmac(Buffer.alloc(32, 1), 'value'), auditHmac(Buffer.alloc(32, 2), 'value'));
  });

  test('short key is rejected', () => {
    assert.throws(() => auditHmac(Buffer.alloc(16), 'value'), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
  });
});
