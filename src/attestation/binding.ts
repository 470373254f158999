import { createHash, timingSafeEqual } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import type { EvidenceResult } from './evidence-result.js';

/** Domain-separation label: report data made for CAS cannot be mistaken for another protocol's. */
export const REPORT_DATA_LABEL = Buffer.from('CAS attestation report data v1\0', 'utf8');

/** Maximum nonce length in bytes, so the length fits the 2-byte prefix. */
export const MAX_NONCE_LENGTH = 0xffff;

/**
 * Computes the 64 bytes of report data that bind evidence to a CAS nonce and to the public key of the TLS
 * client that presents it:
 *
 *   SHA-512( label || u16be(len(nonce)) || nonce || SHA-256(publicKeyDer) )
 *
 * `label` is REPORT_DATA_LABEL, and `publicKeyDer` is the DER SubjectPublicKeyInfo. The length prefix keeps
 * the encoding injective. SGX, TDX and SEV-SNP reports all carry exactly 64 bytes of report data.
 */
export function reportDataFor(nonce: Buffer, publicKeyDer: Buffer): Buffer {
  if (nonce.length === 0 || nonce.length > MAX_NONCE_LENGTH) {
    throw new CasError('NONCE_INVALID', `nonce must be 1 to ${MAX_NONCE_LENGTH} bytes, not ${nonce.length}`);
  }
  if (publicKeyDer.length === 0) throw new CasError('INVALID_ARGUMENT', 'public key for the report data binding is empty');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(nonce.length);
  const keyHash = createHash('sha256').update(publicKeyDer).digest();
  return createHash('sha512').update(REPORT_DATA_LABEL).update(length).update(nonce).update(keyHash).digest();
}

/** Throws EVIDENCE_INVALID unless the evidence's report data binds `nonce` and `publicKeyDer`. */
export function checkBinding(result: EvidenceResult, nonce: Buffer, publicKeyDer: Buffer): void {
  const expected = reportDataFor(nonce, publicKeyDer);
  if (result.reportData.length !== expected.length || !timingSafeEqual(result.reportData, expected)) {
    throw new CasError(
      'EVIDENCE_INVALID',
      'the evidence report data does not bind this nonce and client public key; request a fresh nonce and attest again over the same TLS key',
      { details: { expected: expected.toString('hex'), actual: result.reportData.toString('hex') } },
    );
  }
}
