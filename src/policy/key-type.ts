import type { KeyObject } from 'node:crypto';
import type { KeyType } from './types.js';

/** Returns the session-language key type of a key, or a description of an unsupported key. */
export function keyTypeOf(key: KeyObject): { keyType: KeyType } | { unsupported: string } {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'prime256v1') return { keyType: 'P-256' };
      if (details.namedCurve === 'secp384r1') return { keyType: 'P-384' };
      return { unsupported: `EC key on curve ${details.namedCurve ?? 'unknown'}` };
    case 'ed25519':
      return { keyType: 'Ed25519' };
    case 'rsa':
      if (details.modulusLength === 2048) return { keyType: 'RSA-2048' };
      if (details.modulusLength === 3072) return { keyType: 'RSA-3072' };
      return { unsupported: `RSA key of ${details.modulusLength ?? 'unknown'} bits` };
    default:
      return { unsupported: `${key.asymmetricKeyType ?? 'unknown'} key` };
  }
}
