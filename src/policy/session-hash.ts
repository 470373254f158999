import { createHash } from 'node:crypto';
import type { Session } from './types.js';

/** Prefix hashed before the canonical JSON, so that a session hash never equals a hash of other data. */
export const SESSION_HASH_DOMAIN = 'cas-session-v1\n';

/**
 * Encodes a JSON value canonically: object keys sorted by UTF-16 code units (as in RFC 8785), no
 * whitespace, `undefined` members left out, strings and numbers as `JSON.stringify` writes them.
 * Throws on values JSON cannot represent (non-finite numbers, bigint, functions).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot encode the number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  if (typeof value === 'object') {
    const members = Object.keys(value)
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot encode a ${typeof value}`);
}

/**
 * Returns the session hash: SHA-256 (lower-case hex) of `SESSION_HASH_DOMAIN` followed by the canonical
 * JSON of the normalised session. Key order, quoting, comments and alternative spellings (`mrenclaves`
 * against `attestation`, a single `export` mapping against a list) do not change it; docs/session-hash.md
 * describes the encoding.
 */
export function sessionHash(session: Session): string {
  return createHash('sha256').update(SESSION_HASH_DOMAIN).update(canonicalJson(session)).digest('hex');
}
