import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';

/**
 * AES-256-GCM encryption of one stored value. Layout: `version (1 byte) || nonce (12) || ciphertext || tag (16)`,
 * version 1. The nonce is random per value. With random 96-bit nonces NIST SP 800-38D limits one key to 2^32
 * encryptions, far more than the writes a CAS database makes. The additional authenticated data (AAD)
 * binds the value to its table and row, so a ciphertext copied into another row fails to decrypt.
 */
export const VALUE_FORMAT_VERSION = 1;
export const VALUE_NONCE_LENGTH = 12;
export const VALUE_TAG_LENGTH = 16;
export const VALUE_OVERHEAD = 1 + VALUE_NONCE_LENGTH + VALUE_TAG_LENGTH;

const KEY_LENGTH = 32;

export function encryptValue(key: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  checkKey(key);
  const nonce = randomBytes(VALUE_NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: VALUE_TAG_LENGTH });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VALUE_FORMAT_VERSION]), nonce, ciphertext, cipher.getAuthTag()]);
}

/**
 * Decrypts a value made by `encryptValue` with the same key and AAD. Throws DECRYPTION_FAILED when the value
 * is too short, has an unknown version, or fails authentication (wrong key, wrong row, altered bytes).
 * `description` names the value in the error message, for example the table and file.
 */
export function decryptValue(key: Buffer, aad: Buffer, value: Buffer, description: string): Buffer {
  checkKey(key);
  if (value.length < VALUE_OVERHEAD) {
    throw new CasError(
      'DECRYPTION_FAILED',
      `Decryption failed for ${description}: the value has ${value.length} bytes, fewer than the ${VALUE_OVERHEAD} of an empty encrypted value`,
    );
  }
  if (value[0] !== VALUE_FORMAT_VERSION) {
    throw new CasError(
      'DECRYPTION_FAILED',
      `Decryption failed for ${description}: unknown value format version ${value[0]} (expected ${VALUE_FORMAT_VERSION})`,
    );
  }
  const nonce = value.subarray(1, 1 + VALUE_NONCE_LENGTH);
  const ciphertext = value.subarray(1 + VALUE_NONCE_LENGTH, value.length - VALUE_TAG_LENGTH);
  const tag = value.subarray(value.length - VALUE_TAG_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: VALUE_TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (error) {
    throw new CasError(
      'DECRYPTION_FAILED',
      `Decryption failed for ${description}: authentication failed (wrong key, value moved from another row, or altered bytes)`,
      { cause: error },
    );
  }
}

function checkKey(key: Buffer): void {
  if (key.length !== KEY_LENGTH) {
    throw new CasError('INTERNAL', `AES-256-GCM needs a ${KEY_LENGTH}-byte key, got ${key.length} bytes`);
  }
}
