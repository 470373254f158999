import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import { DATABASE_KEY_LENGTH, hkdfSha256 } from './key-derivation.js';

/**
 * Wrapping of the database key for a platform's public key: ECDH-ES with an ephemeral P-256 key, HKDF-SHA-256
 * and AES-256-GCM. Only the recipient's public key is needed to wrap, so the primary can wrap the key for a
 * backup platform whose private key it never receives.
 *
 * Wrapped layout (126 bytes): `version (1) = 1 || ephemeral public point (65, uncompressed SEC1) || nonce (12)
 * || ciphertext (32) || tag (16)`. The key-encryption key is HKDF-SHA-256 with IKM = the ECDH shared secret
 * (x coordinate, 32 bytes), salt = ephemeral point || recipient point, info = `cas/v1/key-wrap`. The AAD is
 * the platform id in ASCII, so a wrapped key cannot be presented as another platform's entry.
 */
export const WRAP_FORMAT_VERSION = 1;
export const EC_POINT_LENGTH = 65;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
export const WRAPPED_KEY_LENGTH = 1 + EC_POINT_LENGTH + NONCE_LENGTH + DATABASE_KEY_LENGTH + TAG_LENGTH;
const WRAP_LABEL = 'cas/v1/key-wrap';

/** Hex of the first 16 bytes of SHA-256 over the SPKI DER of a platform public key. */
export function platformIdFromSpki(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest().subarray(0, 16).toString('hex');
}

/**
 * Parses a P-256 public key (SPKI PEM). Throws INVALID_ARGUMENT for anything else, because the key normally
 * arrives in a registration request.
 */
export function parsePlatformPublicKey(publicKeyPem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: publicKeyPem, format: 'pem' });
  } catch (error) {
    throw new CasError('INVALID_ARGUMENT', 'Invalid platform public key: expected an SPKI PEM P-256 public key', {
      cause: error,
    });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CasError(
      'INVALID_ARGUMENT',
      `Invalid platform public key: expected an EC P-256 key, got ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim(),
    );
  }
  return key;
}

export function publicKeyDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** Wraps `key` (32 bytes) for the platform that owns `platformPublicKeyPem`. */
export function wrapKeyForPlatform(platformPublicKeyPem: string, key: Buffer): { platformId: string; wrapped: Buffer } {
  if (key.length !== DATABASE_KEY_LENGTH) {
    throw new CasError('INTERNAL', `Only ${DATABASE_KEY_LENGTH}-byte keys are wrapped, got ${key.length} bytes`);
  }
  const recipient = parsePlatformPublicKey(platformPublicKeyPem);
  const platformId = platformIdFromSpki(publicKeyDer(recipient));
  const ephemeral = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ephemeralPoint = ecPoint(ephemeral.publicKey);

  const sharedSecret = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
  const kek = deriveKeyEncryptionKey(sharedSecret, ephemeralPoint, ecPoint(recipient));

  const nonce = randomBytes(NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(Buffer.from(platformId, 'ascii'));
  const ciphertext = Buffer.concat([cipher.update(key), cipher.final()]);
  const wrapped = Buffer.concat([Buffer.from([WRAP_FORMAT_VERSION]), ephemeralPoint, nonce, ciphertext, cipher.getAuthTag()]);
  return { platformId, wrapped };
}

/**
 * Unwraps a key wrapped for the platform whose private key is given. Throws KEY_STORE_INVALID for a malformed
 * wrapped key and DECRYPTION_FAILED when authentication fails (wrong platform, altered bytes).
 */
export function unwrapKeyWithPrivateKey(privateKey: KeyObject, platformId: string, wrapped: Buffer): Buffer {
  if (wrapped.length !== WRAPPED_KEY_LENGTH || wrapped[0] !== WRAP_FORMAT_VERSION) {
    throw new CasError(
      'KEY_STORE_INVALID',
      `Invalid wrapped key for platform ${platformId}: expected ${WRAPPED_KEY_LENGTH} bytes of format version ${WRAP_FORMAT_VERSION}, got ${wrapped.length} bytes of version ${wrapped[0] ?? 'none'}`,
    );
  }
  let offset = 1;
  const ephemeralPoint = wrapped.subarray(offset, (offset += EC_POINT_LENGTH));
  const nonce = wrapped.subarray(offset, (offset += NONCE_LENGTH));
  const ciphertext = wrapped.subarray(offset, (offset += DATABASE_KEY_LENGTH));
  const tag = wrapped.subarray(offset);

  let ephemeralPublic: KeyObject;
  try {
    ephemeralPublic = publicKeyFromPoint(ephemeralPoint);
  } catch (error) {
    throw new CasError('KEY_STORE_INVALID', `Invalid wrapped key for platform ${platformId}: the ephemeral public key is not a P-256 point`, {
      cause: error,
    });
  }
  const recipientPoint = ecPoint(createPublicKey(privateKey));
  const sharedSecret = diffieHellman({ privateKey, publicKey: ephemeralPublic });
  const kek = deriveKeyEncryptionKey(sharedSecret, ephemeralPoint, recipientPoint);

  const decipher = createDecipheriv('aes-256-gcm', kek, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(Buffer.from(platformId, 'ascii'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (error) {
    throw new CasError(
      'DECRYPTION_FAILED',
      `Decryption of the database key wrapped for platform ${platformId} failed: the entry was wrapped for another key or was altered`,
      { cause: error },
    );
  }
}

function deriveKeyEncryptionKey(sharedSecret: Buffer, ephemeralPoint: Buffer, recipientPoint: Buffer): Buffer {
  return hkdfSha256(sharedSecret, WRAP_LABEL, Buffer.concat([ephemeralPoint, recipientPoint]));
}

/** Uncompressed SEC1 point `0x04 || x || y` of a P-256 public key. */
export function ecPoint(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.x === undefined || jwk.y === undefined) throw new CasError('INTERNAL', 'EC public key without coordinates');
  return Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}

function publicKeyFromPoint(point: Buffer): KeyObject {
  if (point.length !== EC_POINT_LENGTH || point[0] !== 4) throw new Error('not an uncompressed P-256 point');
  return createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33, 65).toString('base64url'),
    },
    format: 'jwk',
  });
}
