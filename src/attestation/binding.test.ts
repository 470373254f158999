import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { isCasError } from '../errors/cas-error.js';
import { checkBinding, REPORT_DATA_LABEL, reportDataFor } from './binding.js';
import type { EvidenceResult } from './evidence-result.js';

const publicKeyDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
const nonce = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');

function evidence(reportData: Buffer): EvidenceResult {
  return { teeType: 'tdx', tcbStatus: 'UpToDate', advisoryIds: [], measurements: { debug: false }, reportData };
}

describe('reportDataFor', () => {
  it('follows the documented layout', () => {
    const length = Buffer.from([0x00, nonce.length]);
    const expected = createHash('sha512')
      .update(Buffer.concat([REPORT_DATA_LABEL, length, nonce, createHash('sha256').update(publicKeyDer).digest()]))
      .digest();
    assert.deepEqual(reportDataFor(nonce, publicKeyDer), expected);
    assert.equal(reportDataFor(nonce, publicKeyDer).length, 64);
  });

  it('differs per nonce and per key', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    assert.notDeepEqual(reportDataFor(nonce, publicKeyDer), reportDataFor(Buffer.from(nonce).fill(0xff, 0, 1), publicKeyDer));
    assert.notDeepEqual(reportDataFor(nonce, publicKeyDer), reportDataFor(nonce, other));
  });

  it('rejects empty and oversized nonces', () => {
    assert.throws(() => reportDataFor(Buffer.alloc(0), publicKeyDer), (error) => isCasError(error, 'NONCE_INVALID'));
    assert.throws(() => reportDataFor(Buffer.alloc(0x10000), publicKeyDer), (error) => isCasError(error, 'NONCE_INVALID'));
    assert.equal(reportDataFor(Buffer.alloc(0xffff), publicKeyDer).length, 64);
  });
});

describe('checkBinding', () => {
  it('accepts the matching report data', () => {
    checkBinding(evidence(reportDataFor(nonce, publicKeyDer)), nonce, publicKeyDer);
  });

  it('rejects another nonce', () => {
    const other = Buffer.from(nonce);
    other[0] = other[0]! ^ 1;
    assert.throws(() => checkBinding(evidence(reportDataFor(nonce, publicKeyDer)), other, publicKeyDer), (error) => isCasError(error, 'EVIDENCE_INVALID'));
  });

  it('rejects another key', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    assert.throws(() => checkBinding(evidence(reportDataFor(nonce, publicKeyDer)), nonce, other), (error) => isCasError(error, 'EVIDENCE_INVALID'));
  });

  it('rejects short report data', () => {
    assert.throws(() => checkBinding(evidence(reportDataFor(nonce, publicKeyDer).subarray(0, 32)), nonce, publicKeyDer), (error) => isCasError(error, 'EVIDENCE_INVALID'));
  });
});
