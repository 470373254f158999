import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { AccessPolicy, PolicyAction, PolicyEntry, Principal } from './types.js';

/** The default of every access policy list: only the identity that created the session. */
export const DEFAULT_POLICY_LIST: readonly PolicyEntry[] = [{ kind: 'creator' }];

const KEY_HASH = /^[0-9a-fA-F]{64}$/;

/**
 * Returns the SHA-256 (lower-case hex) of a certificate's SubjectPublicKeyInfo DER: the identity that
 * access policies compare, so that a renewed certificate for the same key keeps its access.
 * Throws the parser's error when `pem` is not a certificate.
 */
export function publicKeyHashOfCertificate(pem: string): string {
  const der = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

/** Parses one access policy entry as written; returns an error text for anything else. */
export function parsePolicyEntry(entry: string): PolicyEntry | { error: string } {
  const trimmed = entry.trim();
  if (trimmed === 'CREATOR') return { kind: 'creator' };
  if (trimmed === 'ANY') return { kind: 'any' };
  if (trimmed === 'NONE') return { kind: 'none' };
  if (KEY_HASH.test(trimmed)) return { kind: 'key', keyHash: trimmed.toLowerCase() };
  if (trimmed.startsWith('-----BEGIN CERTIFICATE-----')) {
    try {
      return { kind: 'key', keyHash: publicKeyHashOfCertificate(trimmed) };
    } catch (error) {
      return { error: `the PEM certificate does not parse (${error instanceof Error ? error.message : String(error)})` };
    }
  }
  return { error: 'expected CREATOR, ANY, NONE, a key hash (64 hexadecimal characters) or a PEM certificate' };
}

/**
 * Decides whether `client` may perform `action` on a session with `policy`. `creatorKeyHash` is the key
 * hash of the identity that created the session (stored by the caller). `NONE` denies everyone, `ANY`
 * admits every authenticated client, `CREATOR` admits the creator, and a key hash admits that key.
 */
export function isAllowed(policy: AccessPolicy, action: PolicyAction, client: Principal, creatorKeyHash: string): boolean {
  let entries = policy.createSessions;
  if (action === 'read') entries = policy.read;
  if (action === 'update') entries = policy.update;
  if (entries.some((entry) => entry.kind === 'none')) return false;

  for (const entry of entries) {
    if (entry.kind === 'any') return true;
    if (entry.kind === 'creator' && sameKeyHash(client.keyHash, creatorKeyHash)) return true;
    if (entry.kind === 'key' && sameKeyHash(client.keyHash, entry.keyHash)) return true;
  }
  return false;
}

function sameKeyHash(a: string, b: string): boolean {
  if (!KEY_HASH.test(a) || !KEY_HASH.test(b)) return false;
  return timingSafeEqual(Buffer.from(a.toLowerCase(), 'hex'), Buffer.from(b.toLowerCase(), 'hex'));
}

/**
 * Returns the namespaces that contain a session, outermost first: `a/b/c` gives `['a', 'a/b']`, and a
 * name without `/` gives `[]`. Creating `a/b/c` requires `create_sessions` on `a/b` (its parent).
 */
export function parentNamespaces(name: string): string[] {
  const parts = name.split('/');
  const parents: string[] = [];
  for (let i = 1; i < parts.length; i += 1) parents.push(parts.slice(0, i).join('/'));
  return parents;
}
