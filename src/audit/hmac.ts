import { createHmac } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';

/** Minimum length of the per-CAS audit HMAC key. */
export const AUDIT_HMAC_KEY_BYTES = 32;

/**
 * Computes `hmac-sha256:<hex>` of a value under the per-CAS audit HMAC key, as Vault's audit devices do: two
 * entries about the same value carry the same HMAC, so they can be correlated, while the value itself never
 * reaches the log. Anyone with the key can test guessed values, so it must stay as secret as the database key.
 */
export function auditHmac(hmacKey: Buffer, value: string | Buffer): string {
  if (hmacKey.length < AUDIT_HMAC_KEY_BYTES) {
    throw new CasError('INVALID_ARGUMENT', `The audit HMAC key has ${hmacKey.length} bytes; it needs at least ${AUDIT_HMAC_KEY_BYTES}.`);
  }
  return `hmac-sha256:${createHmac('sha256', hmacKey).update(value).digest('hex')}`;
}
