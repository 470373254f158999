import { createHmac, hkdfSync } from 'node:crypto';

/** Length of the database key and of every subkey, in bytes. */
export const DATABASE_KEY_LENGTH = 32;

/**
 * HKDF-SHA-256 labels (the `info` input) of the subkeys derived from the database key. Each use gets its own
 * label, so a key for one purpose never serves another. The salt is empty: the database key is already
 * uniformly random (RFC 5869, section 3.1).
 */
export const SUBKEY_LABELS = {
  valueEncryption: 'cas/v1/store/value-encryption',
  sessionLookup: 'cas/v1/store/session-lookup-hmac',
  metaLookup: 'cas/v1/store/meta-lookup-hmac',
  keyStoreMac: 'cas/v1/store/key-store-mac',
} as const;

/** Prefix of the labels that `deriveApplicationKey` accepts, so callers cannot derive one of the store's own keys. */
export const APPLICATION_LABEL_PREFIX = 'cas/v1/app/';

export interface StoreSubkeys {
  valueEncryption: Buffer;
  sessionLookup: Buffer;
  metaLookup: Buffer;
  keyStoreMac: Buffer;
}

/** HKDF-SHA-256 (RFC 5869) with `label` as info; returns 32 bytes. */
export function hkdfSha256(key: Buffer, label: string, salt: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, Buffer.from(label, 'utf8'), DATABASE_KEY_LENGTH));
}

export function deriveStoreSubkeys(databaseKey: Buffer): StoreSubkeys {
  return {
    valueEncryption: hkdfSha256(databaseKey, SUBKEY_LABELS.valueEncryption),
    sessionLookup: hkdfSha256(databaseKey, SUBKEY_LABELS.sessionLookup),
    metaLookup: hkdfSha256(databaseKey, SUBKEY_LABELS.metaLookup),
    keyStoreMac: hkdfSha256(databaseKey, SUBKEY_LABELS.keyStoreMac),
  };
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
