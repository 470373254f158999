import 'reflect-metadata';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../logging/logger.js';
import { AuditLog } from './audit-log.js';
import type { AuditHead } from './entry.js';
import { createAuditTestIdentity, makeTempDir, sampleEvents } from './test-support.js';
import { verifyAuditContents, type AuditVerification } from './verify.js';

/**
 * Exhaustive tampering of a small log written by the real writer: each test verifies one variant per byte
 * position, so these tests live in their own file and run beside the others.
 */

let sample: Buffer;
let sampleHead: AuditHead;
let directory: string;

before(async () => {
  const identity = await createAuditTestIdentity();
  directory = await makeTempDir('exhaustive');
  const path = join(directory, 'cas_audit.log');
  const log = await AuditLog.open({ path, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger() });
  // Four entries: the first carries the certificate chain, the others cover details, targets and actors.
  for (const event of sampleEvents((value) => log.hmac(value)).slice(0, 4)) await log.append(event);
  sampleHead = log.head();
  await log.close();
  sample = await readFile(path);
});

after(async () => {
  await rm(directory, { recursive: true, force: true });
});

function verify(content: Buffer): AuditVerification {
  return verifyAuditContents([{ name: 'cas_audit.log', content }]);
}

describe('verifyAuditContents tampering', () => {
  test('sample log verifies intact', () => {
    assert.deepEqual(verify(sample).problems, []);
    assert.equal(verify(sample).head?.seq, sampleHead.seq);
  });

  test('every single-byte change is detected', () => {
    const undetected: string[] = [];
    for (let position = 0; position < sample.length; position++) {
      // Flipping the low bit turns every byte into a different one: a letter into its neighbour, a digit
      // into another digit, `"` into `#`, `\n` into `\v`.
      const changed = Buffer.from(sample);
      changed[position] = sample[position]! ^ 0x01;
      if (verify(changed).ok) undetected.push(`byte ${position}: ${sample[position]} -> ${changed[position]}`);
    }
    assert.deepEqual(undetected, []);
  });

  test('every inserted space is detected', () => {
    // Whitespace between JSON tokens leaves the parsed value equal; only the canonical-bytes rule catches it.
    const undetected: string[] = [];
    for (let position = 0; position <= sample.length; position++) {
      const inserted = Buffer.concat([sample.subarray(0, position), Buffer.from(' '), sample.subarray(position)]);
      if (verify(inserted).ok) undetected.push(`space inserted at ${position}`);
    }
    assert.deepEqual(undetected, []);
  });

  test('deleted bytes are detected', () => {
    // Every third position plus the last, to keep the test short; flips and insertions cover every position.
    const positions = Array.from({ length: Math.ceil(sample.length / 3) }, (_, i) => i * 3).concat(sample.length - 1);
    const undetected: string[] = [];
    for (const position of positions) {
      const deleted = Buffer.concat([sample.subarray(0, position), sample.subarray(position + 1)]);
      // Deleting the final newline leaves a partial line, which is reported too.
      if (verify(deleted).ok) undetected.push(`byte deleted at ${position}`);
    }
    assert.deepEqual(undetected, []);
  });
});
