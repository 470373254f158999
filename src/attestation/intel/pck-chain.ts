import { LruCache } from '../lru.js';
import { certificatesFromPem, type Certificate } from '../x509.js';

/**
 * Parsed PCK certificate chains by their exact PEM text. A chain belongs to one platform and comes in
 * every quote that platform sends, so collateralKeyForQuote and verifyIntelQuote both read it from here
 * and parse it once. An entry holds only the parse result (names, validity dates, public keys,
 * extensions), which the PEM text fully determines. Signatures, validity at the verification time and
 * revocation are checked by the caller on every quote.
 *
 * The map key is a short fingerprint, because V8 hashes the whole string on every lookup of a fresh
 * string, and a PCK chain is about 3.5 KB of text. A hit counts only when the stored PEM text equals the
 * quote's. A fingerprint collision replaces the entry, so it costs a parse and never returns a wrong chain.
 *
 * 1024 entries cover 1024 platforms. One entry is 3 certificates of about 1 KB each with their parsed
 * fields and public keys, so a full cache takes a few MB. A platform beyond that costs a parse.
 */
const chains = new LruCache<string, { pem: string; chain: readonly Certificate[] }>(1024);

/**
 * Longest PEM text that is cached. Entries are stored before any signature is checked, so without this
 * limit a client could fill the cache with 1024 chains as long as the request body limit allows (200 chains
 * of 700 KB took about 900 MB). A real PCK chain is about 3.5 KB.
 */
export const MAX_CACHED_CHAIN_CHARS = 16 * 1024;

const FINGERPRINT_SAMPLES = 32;

/** Parses a quote's PEM PCK certificate chain (leaf first), reusing the result for the same PEM text. */
export function parsePckChain(pem: string): readonly Certificate[] {
  const key = pckChainFingerprint(pem);
  const cached = chains.get(key);
  if (cached !== undefined && cached.pem === pem) return cached.chain;
  const chain = certificatesFromPem(pem, 'quote PCK certificate chain');
  if (pem.length <= MAX_CACHED_CHAIN_CHARS) chains.set(key, { pem, chain });
  return chain;
}

/** Returns the text's length and 32 characters sampled evenly across it; the leaf certificate covers about a third of them. */
export function pckChainFingerprint(text: string): string {
  const step = Math.max(1, Math.floor(text.length / FINGERPRINT_SAMPLES));
  let key = `${text.length}:`;
  for (let i = step >> 1; i < text.length; i += step) key += text[i];
  return key;
}

/** Number of cached chains, for tests. */
export function cachedPckChainCount(): number {
  return chains.size;
}
