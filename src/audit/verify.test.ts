import 'reflect-metadata';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../logging/logger.js';
import { AuditLog } from './audit-log.js';
import { canonicalJson, entryLine, parseAuditLine, sha256Hex, signedBytes, type AuditEntry, type AuditHead } from './entry.js';
import { signEntryBytes } from './signing.js';
import { createAuditTestIdentity, makeTempDir, sampleEvents, type AuditTestIdentity } from './test-support.js';
import { verifyAuditContents, verifyAuditLog, type AuditVerification } from './verify.js';

let identity: AuditTestIdentity;
let other: AuditTestIdentity;
let sample: Buffer;
let sampleHead: AuditHead;
let directory: string;

const NAME = 'cas_audit.log';

before(async () => {
  [identity, other] = await Promise.all([createAuditTestIdentity(), createAuditTestIdentity()]);
  directory = await makeTempDir('verify');
  const path = join(directory, 'sample', NAME);
  const log = await AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger() });
  for (const event of sampleEvents((value) => log.hmac(value))) await log.append(event);
  sampleHead = log.head();
  await log.close();
  sample = await readFile(path);
});

after(async () => {
  await rm(directory, { recursive: true, force: true });
});

function verify(content: Buffer, options: { head?: AuditHead; cas?: string } = {}): AuditVerification {
  return verifyAuditContents([{ name: NAME, content }], {
    ...(options.head === undefined ? {} : { expectedHead: options.head }),
    ...(options.cas === undefined ? {} : { casCertificatePem: options.cas }),
  });
}

function lines(content: Buffer): Buffer[] {
  const text = content.toString('utf8');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => Buffer.from(line + '\n'));
}

function firstCode(result: AuditVerification): string | undefined {
  return result.problems[0]?.code;
}

/** Re-signs entries with another identity's key and chain, as an attacker with write access but no audit key could. */
function resign(entries: AuditEntry[], signer: AuditTestIdentity['signer']): Buffer {
  let prev = entries[0]!.prev;
  const out: Buffer[] = [];
  for (const original of entries) {
    const { hash: _hash, sig: _sig, ...unsigned } = original;
    const entry = { ...unsigned, prev, ...(original.chain === undefined ? {} : { chain: signer.certificateChainPem }) } as AuditEntry;
    const bytes = signedBytes(entry);
    entry.hash = sha256Hex(bytes);
    entry.sig = signEntryBytes(signer.privateKey, bytes);
    prev = entry.hash;
    out.push(entryLine(entry));
  }
  return Buffer.concat(out);
}

function parsedEntries(content: Buffer): AuditEntry[] {
  return lines(content).map((line) => {
    const parsed = parseAuditLine(line.subarray(0, -1));
    assert.ok(parsed.ok);
    return parsed.entry;
  });
}

describe('verifyAuditContents', () => {
  test('intact sample verifies', () => {
    const result = verify(sample, { head: sampleHead, cas: identity.casCertificatePem });
    assert.deepEqual(result.problems, []);
    assert.equal(result.ok, true);
    assert.equal(result.entries, 7);
    assert.deepEqual(result.head, sampleHead);
    assert.equal(result.firstSeq, 1);
    assert.equal(result.fromGenesis, true);
    assert.deepEqual(result.counts, {
      'cas.started': 1,
      'cas.stopped': 1,
      'cas.provisioned': 1,
      'session.created': 1,
      'service.attested': 1,
      'service.rejected': 1,
      'config.released': 1,
    });
  });

  test('integrity problem names file and line', () => {
    const all = lines(sample);
    const tampered = Buffer.from(all[3]!.toString('utf8').replace('"api"', '"apj"'));
    const result = verify(Buffer.concat([...all.slice(0, 3), tampered, ...all.slice(4)]));
    assert.equal(firstCode(result), 'AUDIT_INTEGRITY');
    assert.equal(result.problems[0]!.file, NAME);
    assert.equal(result.problems[0]!.line, 4);
  });

  test('non-canonical but equal JSON is rejected', () => {
    const all = lines(sample);
    const text = all[1]!.toString('utf8').slice(0, -1);
    const entry = JSON.parse(text) as Record<string, unknown>;
    const variants = {
      'reordered keys': JSON.stringify(Object.fromEntries(Object.entries(entry).reverse())),
      'escaped character': text.replace('"keyHash":"a', '"keyHash":"\\u0061'),
      'duplicate key': text.replace('{', '{"seq":99,'),
    };
    for (const [name, variant] of Object.entries(variants)) {
      assert.notEqual(variant, text, name);
      const result = verify(Buffer.concat([all[0]!, Buffer.from(variant + '\n'), ...all.slice(2)]));
      assert.equal(firstCode(result), 'AUDIT_INTEGRITY', name);
      assert.match(result.problems[0]!.message, /canonical/, name);
      assert.equal(result.problems[0]!.line, 2, name);
    }
  });

  test('removing any one line is detected', () => {
    const all = lines(sample);
    for (let index = 0; index < all.length; index++) {
      const removed = Buffer.concat(all.filter((_, i) => i !== index));
      const withHead = verify(removed, { head: sampleHead });
      assert.equal(withHead.ok, false, `line ${index + 1} removed, with head`);
      if (index < all.length - 1) {
        assert.equal(verify(removed).ok, false, `line ${index + 1} removed, without head`);
      } else {
        assert.equal(firstCode(withHead), 'AUDIT_TRUNCATED');
      }
    }
  });

  test('removing a middle line is a gap', () => {
    const all = lines(sample);
    const result = verify(Buffer.concat([...all.slice(0, 2), ...all.slice(3)]));
    assert.equal(firstCode(result), 'AUDIT_GAP');
    assert.equal(result.problems[0]!.line, 3);
  });

  test('swapping any two lines is detected', () => {
    const all = lines(sample);
    for (let i = 0; i < all.length; i++) {
      for (let j = i + 1; j < all.length; j++) {
        const swapped = [...all];
        [swapped[i], swapped[j]] = [swapped[j]!, swapped[i]!];
        const result = verify(Buffer.concat(swapped), { head: sampleHead });
        assert.equal(result.ok, false, `lines ${i + 1} and ${j + 1} swapped`);
      }
    }
    const adjacent = [...all];
    [adjacent[2], adjacent[3]] = [adjacent[3]!, adjacent[2]!];
    assert.equal(firstCode(verify(Buffer.concat(adjacent))), 'AUDIT_GAP');
  });

  test('truncation at a line boundary needs the head', () => {
    const all = lines(sample);
    const truncated = Buffer.concat(all.slice(0, 4));
    assert.equal(verify(truncated).ok, true, 'a prefix of the log is a valid log');
    const result = verify(truncated, { head: sampleHead });
    assert.equal(firstCode(result), 'AUDIT_TRUNCATED');
    assert.match(result.problems[0]!.message, /seq 4 .* seq 7/);
  });

  test('truncation inside a line is a partial line', () => {
    const cut = sample.subarray(0, sample.length - 40);
    const result = verify(cut);
    assert.deepEqual(
      result.problems.map((problem) => [problem.code, problem.line]),
      [['AUDIT_PARTIAL_LINE', 7]],
    );
    const withHead = verify(cut, { head: sampleHead });
    assert.deepEqual(
      withHead.problems.map((problem) => problem.code),
      ['AUDIT_PARTIAL_LINE', 'AUDIT_TRUNCATED'],
    );
  });

  test('empty head is satisfied by any log', () => {
    assert.equal(verify(sample, { head: { seq: 0, hash: '0'.repeat(64) } }).ok, true);
    assert.equal(verify(Buffer.alloc(0), { head: { seq: 0, hash: '0'.repeat(64) } }).ok, true);
    assert.equal(firstCode(verify(Buffer.alloc(0), { head: { seq: 1, hash: '0'.repeat(64) } })), 'AUDIT_TRUNCATED');
  });

  test('head with another hash is an integrity problem', () => {
    const result = verify(sample, { head: { seq: sampleHead.seq, hash: 'f'.repeat(64) } });
    assert.equal(firstCode(result), 'AUDIT_INTEGRITY');
  });

  test('rehashed entry without the audit key is detected', () => {
    const entries = parsedEntries(sample);
    const forged = entries.map((entry) => (entry.seq === 3 ? ({ ...entry, target: { session: 'team/other' } } as AuditEntry) : entry));
    // The forger recomputes every hash but can only sign with a key the CAS did not certify.
    const stranger = { ...identity.signer, privateKey: other.signer.privateKey };
    const result = verify(resign(forged, stranger));
    assert.equal(firstCode(result), 'AUDIT_INTEGRITY');
    assert.match(result.problems[0]!.message, /signature/);
  });

  test('log re-signed under another CAS needs the CAS certificate', () => {
    const rewritten = resign(parsedEntries(sample), other.signer);
    const unanchored = verify(rewritten);
    assert.equal(unanchored.ok, true, 'without an anchor a wholly rewritten log is self-consistent');
    assert.notEqual(unanchored.casCertificateSha256, verify(sample).casCertificateSha256);
    assert.equal(firstCode(verify(rewritten, { cas: identity.casCertificatePem })), 'AUDIT_WRONG_CAS');
  });

  test('wrong CAS certificate is reported', () => {
    const result = verify(sample, { cas: other.casCertificatePem });
    assert.equal(firstCode(result), 'AUDIT_WRONG_CAS');
    assert.equal(result.problems[0]!.line, 1);
  });

  test('change of CAS within a log is reported', async () => {
    const path = join(directory, 'switch', NAME);
    let log = await AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger() });
    await log.append(sampleEvents(() => '')[0]!);
    await log.close();
    log = await AuditLog.open({ path, signer: other.signer, hmacKey: other.hmacKey, logger: silentLogger() });
    await log.append(sampleEvents(() => '')[0]!);
    await log.close();

    const result = await verifyAuditLog({ files: [path] });
    assert.equal(firstCode(result), 'AUDIT_WRONG_CAS');
    assert.equal(result.problems[0]!.line, 2);
  });
});

describe('verifyAuditLog', () => {
  let rotatedDirectory: string;
  let files: string[];
  let head: AuditHead;

  before(async () => {
    rotatedDirectory = join(directory, 'rotated');
    const log = await AuditLog.open({ path: join(rotatedDirectory, NAME), signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger(), maxFileBytes: 3000 });
    for (let i = 0; i < 30; i++) {
      await log.append({ event: 'session.read', actor: { kind: 'client', keyHash: 'e'.repeat(64) }, target: { session: `s/${i}` }, outcome: 'success', details: {} });
    }
    head = log.head();
    await log.close();
    const names = (await readdir(rotatedDirectory)).filter((name) => name !== NAME).sort();
    files = [...names, NAME].map((name) => join(rotatedDirectory, name));
    assert.ok(files.length >= 4, `expected at least four files, got ${files.length}`);
  });

  test('directory input verifies across rotation', async () => {
    const result = await verifyAuditLog({ files: [rotatedDirectory], casCertificatePem: identity.casCertificatePem, expectedHead: head });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.files, files);
    assert.equal(result.counts['log.rotated'], files.length - 1);
  });

  test('files in rotation order verify', async () => {
    const result = await verifyAuditLog({ files, expectedHead: head });
    assert.equal(result.ok, true);
  });

  test('missing middle file is a gap', async () => {
    const result = await verifyAuditLog({ files: [files[0]!, ...files.slice(2)] });
    assert.equal(firstCode(result), 'AUDIT_GAP');
    assert.equal(result.problems[0]!.file, files[2]);
    assert.equal(result.problems[0]!.line, 1);
  });

  test('files out of order are a gap', async () => {
    const result = await verifyAuditLog({ files: [files[1]!, files[0]!, ...files.slice(2)] });
    assert.equal(firstCode(result), 'AUDIT_GAP');
  });

  test('newest files alone verify as a continuation', async () => {
    const result = await verifyAuditLog({ files: files.slice(-2), expectedHead: head });
    assert.equal(result.ok, true, JSON.stringify(result.problems));
    assert.equal(result.fromGenesis, false);
  });

  test('head in an omitted older file is a gap', async () => {
    const result = await verifyAuditLog({ files: files.slice(-1), expectedHead: { seq: 1, hash: 'a'.repeat(64) } });
    assert.equal(firstCode(result), 'AUDIT_GAP');
  });

  test('directory without its active file verifies', async () => {
    // The state between renaming the full file and creating the next one.
    const copy = join(directory, 'rotated-only');
    await mkdir(copy);
    for (const file of files.slice(0, -1)) await copyFile(file, join(copy, basename(file)));
    const result = await verifyAuditLog({ files: [copy] });
    assert.equal(result.ok, true, JSON.stringify(result.problems));
    assert.equal(result.files.length, files.length - 1);
  });

  test('directory with two logs is rejected', async () => {
    const mixed = join(directory, 'two-logs');
    await mkdir(mixed);
    await copyFile(files.at(-1)!, join(mixed, 'a.log'));
    await copyFile(files.at(-1)!, join(mixed, 'b.log'));
    await assert.rejects(verifyAuditLog({ files: [mixed] }), { code: 'INVALID_ARGUMENT' });
  });

  test('incomplete line in a rotated file is an integrity problem', async () => {
    const content = await readFile(files[0]!);
    const result = verifyAuditContents([
      { name: files[0]!, content: content.subarray(0, -10) },
      ...(await Promise.all(files.slice(1).map(async (name) => ({ name, content: await readFile(name) })))),
    ]);
    assert.equal(firstCode(result), 'AUDIT_INTEGRITY');
    assert.equal(result.problems[0]!.file, files[0]);
  });

  test('missing file is not found', async () => {
    await assert.rejects(verifyAuditLog({ files: [join(directory, 'absent.log')] }), { code: 'NOT_FOUND' });
  });
});
