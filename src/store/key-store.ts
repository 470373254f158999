import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CasError, isCasError } from '../errors/cas-error.js';
import { writeFileAtomic } from './atomic-file.js';
import { deriveStoreSubkeys, hmacSha256 } from './key-derivation.js';
import { WRAPPED_KEY_LENGTH, platformIdFromSpki, parsePlatformPublicKey, publicKeyDer, wrapKeyForPlatform } from './key-wrap.js';
import { EVIDENCE_TYPES, type EvidenceType, type KeyStoreEntry, type PlatformRegistration } from './types.js';

export const KEY_STORE_FORMAT = 'cas-key-store';
/** Version of a key store with only current entries. */
export const KEY_STORE_VERSION = 1;
/** Version of a key store that also contains the next key's entries, written during a key rotation. */
export const KEY_STORE_VERSION_ROTATING = 2;
/** Prefix of the HMAC input, so the key-store MAC cannot be confused with another HMAC under a related key. */
const MAC_CONTEXT = 'cas-key-store-mac v1\n';
const MAC_LENGTH = 32;

interface EntryJson {
  platformId: string;
  publicKey: string;
  wrappedKey: string;
  registeredAt: string;
  evidenceType: EvidenceType;
  registeredBy: string;
}

/**
 * The key store (`cas.key-store`): the database key wrapped once for every platform that may open the
 * database, and an HMAC-SHA-256 over the entry list under a key derived from the database key. Each wrapped
 * key is authenticated by AES-GCM; the MAC also detects entries that were removed, reordered or edited
 * (registration time, evidence type, registrant). The MAC can only be checked after a platform has unwrapped
 * the database key, so `read` checks the structure and `verifyMac` the MAC. Format: docs/storage-format.md.
 */
export class KeyStore {
  private list: KeyStoreEntry[];
  private readonly mac: Buffer | undefined;
  /** Entries of the next database key during a rotation, with their MAC under the next key. */
  private readonly next: { list: KeyStoreEntry[]; mac: Buffer } | undefined;

  private constructor(entries: KeyStoreEntry[], mac: Buffer | undefined, next?: { list: KeyStoreEntry[]; mac: Buffer }) {
    this.list = entries;
    this.mac = mac;
    this.next = next;
  }

  /** Reads and parses a key store file. Throws KEY_STORE_INVALID naming the file when it is not one. */
  static read(path: string): KeyStore {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : (error as Error).message;
      throw new CasError('KEY_STORE_INVALID', `Cannot read key store ${path}: ${reason}`, { cause: error });
    }
    return KeyStore.parse(bytes, path);
  }

  /** Parses key store bytes; `source` names them in errors. */
  static parse(bytes: Buffer, source: string): KeyStore {
    let document: unknown;
    try {
      document = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw invalid(source, 'it is not complete JSON (truncated or altered)', error);
    }
    if (!isRecord(document)) throw invalid(source, 'the top level is not a JSON object');
    if (document['format'] !== KEY_STORE_FORMAT) throw invalid(source, `the format field is not "${KEY_STORE_FORMAT}"`);
    const version = document['version'];
    if (version !== KEY_STORE_VERSION && version !== KEY_STORE_VERSION_ROTATING) {
      throw invalid(source, `unsupported version ${JSON.stringify(version)} (this build reads versions ${KEY_STORE_VERSION} and ${KEY_STORE_VERSION_ROTATING})`);
    }
    const rawEntries = document['entries'];
    if (!Array.isArray(rawEntries) || rawEntries.length === 0) throw invalid(source, 'the entries list is missing or empty');
    const entries = rawEntries.map((raw, index) => parseEntry(raw, index, source));
    const ids = new Set(entries.map((entry) => entry.platformId));
    if (ids.size !== entries.length) throw invalid(source, 'a platform id appears in more than one entry');
    const mac = document['mac'];
    if (typeof mac !== 'string' || Buffer.from(mac, 'base64').length !== MAC_LENGTH) {
      throw invalid(source, `the mac field is not a base64 ${MAC_LENGTH}-byte value`);
    }
    if (version === KEY_STORE_VERSION) {
      if (document['next'] !== undefined) throw invalid(source, `a version ${KEY_STORE_VERSION} key store has a next field`);
      return new KeyStore(entries, Buffer.from(mac, 'base64'));
    }
    const next = document['next'];
    if (!isRecord(next) || !Array.isArray(next['entries'])) throw invalid(source, `a version ${KEY_STORE_VERSION_ROTATING} key store needs a next object with an entries list`);
    const nextEntries = next['entries'].map((raw, index) => parseEntry(raw, index, `${source} (next)`));
    const sameIds = nextEntries.length === entries.length && nextEntries.every((entry, index) => entry.platformId === entries[index]!.platformId);
    if (!sameIds) throw invalid(source, 'the next entries name other platforms than the current entries');
    const nextMac = next['mac'];
    if (typeof nextMac !== 'string' || Buffer.from(nextMac, 'base64').length !== MAC_LENGTH) {
      throw invalid(source, `the next mac field is not a base64 ${MAC_LENGTH}-byte value`);
    }
    return new KeyStore(entries, Buffer.from(mac, 'base64'), { list: nextEntries, mac: Buffer.from(nextMac, 'base64') });
  }

  /** True while the file contains a next key (a rotation was started and not finished). */
  get rotating(): boolean {
    return this.next !== undefined;
  }

  /** The entry of `platformId` for the next key, during a rotation. */
  nextEntry(platformId: string): KeyStoreEntry | undefined {
    const found = this.next?.list.find((entry) => entry.platformId === platformId);
    return found === undefined ? undefined : { ...found, wrappedKey: Buffer.from(found.wrappedKey) };
  }

  /**
   * Returns a key store that keeps the current entries and adds the same platforms (same registration data)
   * with `nextKey` wrapped for each, MACed under `nextKey`. Written before a rotation commits, so that both
   * the old and the new database key can be unwrapped whichever state the database is in.
   */
  withNextKey(nextKey: Buffer): KeyStore {
    const nextList = this.list.map((entry) => ({ ...entry, wrappedKey: wrapKeyForPlatform(entry.publicKeyPem, nextKey).wrapped }));
    return new KeyStore(this.entries(), undefined, { list: nextList, mac: computeMac(nextKey, nextList, KEY_STORE_VERSION) });
  }

  /** The key store after a rotation: the next entries become the only entries. */
  promoteNext(): KeyStore {
    if (this.next === undefined) throw new CasError('INTERNAL', 'The key store contains no next key to promote');
    return new KeyStore(this.next.list.map((entry) => ({ ...entry, wrappedKey: Buffer.from(entry.wrappedKey) })), undefined);
  }

  /** The key store without its next entries (a rotation that did not commit). */
  withoutNext(): KeyStore {
    return new KeyStore(this.entries(), undefined);
  }

  /** Checks the next entries' MAC against `nextKey`. Throws KEY_STORE_INVALID naming `source`. */
  verifyNextMac(nextKey: Buffer, source: string): void {
    if (this.next === undefined) throw invalid(source, 'it contains no next key');
    const expected = computeMac(nextKey, this.next.list, KEY_STORE_VERSION);
    if (!timingSafeEqual(this.next.mac, expected)) {
      throw invalid(source, 'MAC verification of the next entries failed, so the file was altered or belongs to another database');
    }
  }

  /** Creates a key store with one entry: the database key wrapped for the first platform. */
  static create(databaseKey: Buffer, first: PlatformRegistration): KeyStore {
    const store = new KeyStore([], undefined);
    store.addPlatform(databaseKey, first);
    return store;
  }

  private get version(): number {
    return this.next === undefined ? KEY_STORE_VERSION : KEY_STORE_VERSION_ROTATING;
  }

  entries(): KeyStoreEntry[] {
    return this.list.map((entry) => ({ ...entry, wrappedKey: Buffer.from(entry.wrappedKey) }));
  }

  entry(platformId: string): KeyStoreEntry | undefined {
    const found = this.list.find((entry) => entry.platformId === platformId);
    return found === undefined ? undefined : { ...found, wrappedKey: Buffer.from(found.wrappedKey) };
  }

  /**
   * Adds an entry. Idempotent: returns false and keeps the existing entry when the platform is already
   * present with the same public key. Throws KEY_STORE_INVALID for a malformed entry, for example one whose id does not match its key.
   */
  addEntry(entry: KeyStoreEntry): boolean {
    const checked = parseEntry(entryToJson(entry), this.list.length, 'the new entry');
    const existing = this.list.find((candidate) => candidate.platformId === checked.platformId);
    if (existing !== undefined) {
      if (existing.publicKeyPem.trim() !== checked.publicKeyPem.trim()) {
        throw new CasError('KEY_STORE_INVALID', `Platform id ${checked.platformId} is already registered with another public key`);
      }
      return false;
    }
    this.list = [...this.list, checked];
    return true;
  }

  /** Wraps `databaseKey` for the registration's public key and adds the entry (idempotent, see addEntry). */
  addPlatform(databaseKey: Buffer, registration: PlatformRegistration): { entry: KeyStoreEntry; added: boolean } {
    if (!EVIDENCE_TYPES.includes(registration.evidenceType)) {
      throw new CasError('INVALID_ARGUMENT', `Unknown evidence type ${JSON.stringify(registration.evidenceType)}; expected one of ${EVIDENCE_TYPES.join(', ')}`);
    }
    const { platformId, wrapped } = wrapKeyForPlatform(registration.publicKeyPem, databaseKey);
    const existing = this.entry(platformId);
    if (existing !== undefined) return { entry: existing, added: false };
    const entry: KeyStoreEntry = {
      platformId,
      publicKeyPem: normalisePem(registration.publicKeyPem),
      wrappedKey: wrapped,
      registeredAt: (registration.registeredAt ?? new Date()).toISOString(),
      evidenceType: registration.evidenceType,
      registeredBy: registration.registeredBy,
    };
    this.addEntry(entry);
    return { entry: this.entry(platformId)!, added: true };
  }

  /** Removes the entry of `platformId`; returns false when there was none. */
  removeEntry(platformId: string): boolean {
    const remaining = this.list.filter((entry) => entry.platformId !== platformId);
    const removed = remaining.length !== this.list.length;
    this.list = remaining;
    return removed;
  }

  /** Checks the MAC read from the file against `databaseKey`. Throws KEY_STORE_INVALID naming `source`. */
  verifyMac(databaseKey: Buffer, source: string): void {
    const expected = computeMac(databaseKey, this.list, this.version, this.next?.list);
    if (this.mac === undefined || !timingSafeEqual(this.mac, expected)) {
      throw invalid(source, 'MAC verification failed, so the file was altered or belongs to another database');
    }
  }

  /** Serialises the key store as pretty-printed JSON with a fresh MAC under `databaseKey`. */
  serialize(databaseKey: Buffer): Buffer {
    if (this.list.length === 0) throw new CasError('INTERNAL', 'A key store needs at least one entry');
    const document = {
      format: KEY_STORE_FORMAT,
      version: this.version,
      entries: this.list.map(entryToJson),
      mac: computeMac(databaseKey, this.list, this.version, this.next?.list).toString('base64'),
      ...(this.next === undefined ? {} : { next: { entries: this.next.list.map(entryToJson), mac: this.next.mac.toString('base64') } }),
    };
    return Buffer.from(JSON.stringify(document, undefined, 2) + '\n', 'utf8');
  }

  /**
   * Writes the key store to `path` atomically: a temporary file in the same directory (mode 0600), fsync,
   * rename over `path`, fsync of the directory. A crash leaves either the old or the new file.
   */
  writeAtomic(path: string, databaseKey: Buffer): void {
    try {
      writeFileAtomic(path, this.serialize(databaseKey));
    } catch (error) {
      if (isCasError(error, 'INTERNAL')) throw new CasError('DATABASE_ERROR', error.message, { cause: error });
      throw error;
    }
  }
}

function macInput(
  entries: KeyStoreEntry[],
  version: number,
  nextEntries: KeyStoreEntry[] | undefined,
): { format: string; version: number; entries: EntryJson[]; nextEntries?: EntryJson[] } {
  const input = { format: KEY_STORE_FORMAT, version, entries: entries.map(entryToJson) };
  return nextEntries === undefined ? input : { ...input, nextEntries: nextEntries.map(entryToJson) };
}

/**
 * HMAC-SHA-256 over the context string and the compact JSON of format, version, entries and, in version 2,
 * the next entries (fixed key order).
 */
function computeMac(databaseKey: Buffer, entries: KeyStoreEntry[], version: number, nextEntries?: KeyStoreEntry[]): Buffer {
  const key = deriveStoreSubkeys(databaseKey).keyStoreMac;
  return hmacSha256(key, MAC_CONTEXT + JSON.stringify(macInput(entries, version, nextEntries)));
}

function entryToJson(entry: KeyStoreEntry): EntryJson {
  return {
    platformId: entry.platformId,
    publicKey: entry.publicKeyPem,
    wrappedKey: entry.wrappedKey.toString('base64'),
    registeredAt: entry.registeredAt,
    evidenceType: entry.evidenceType,
    registeredBy: entry.registeredBy,
  };
}

function parseEntry(raw: unknown, index: number, source: string): KeyStoreEntry {
  const where = `entry ${index}`;
  if (!isRecord(raw)) throw invalid(source, `${where} is not an object`);
  const field = (name: keyof EntryJson): string => {
    const value = raw[name];
    if (typeof value !== 'string' || value.length === 0) throw invalid(source, `${where} has no ${name} string`);
    return value;
  };
  const platformId = field('platformId');
  const publicKeyPem = field('publicKey');
  const wrappedKey = Buffer.from(field('wrappedKey'), 'base64');
  const registeredAt = field('registeredAt');
  const evidenceType = field('evidenceType') as EvidenceType;
  const registeredBy = field('registeredBy');

  let derivedId: string;
  try {
    derivedId = platformIdFromSpki(publicKeyDer(parsePlatformPublicKey(publicKeyPem)));
  } catch (error) {
    throw invalid(source, `${where} has a public key that is not a P-256 SPKI PEM key`, error);
  }
  if (derivedId !== platformId) throw invalid(source, `${where} has platform id ${platformId}, but its public key has id ${derivedId}`);
  if (wrappedKey.length !== WRAPPED_KEY_LENGTH) {
    throw invalid(source, `${where} has a wrapped key of ${wrappedKey.length} bytes; expected ${WRAPPED_KEY_LENGTH}`);
  }
  if (Number.isNaN(Date.parse(registeredAt))) throw invalid(source, `${where} has registeredAt ${JSON.stringify(registeredAt)}, which is not an ISO 8601 time`);
  if (!EVIDENCE_TYPES.includes(evidenceType)) {
    throw invalid(source, `${where} has evidence type ${JSON.stringify(evidenceType)}; expected one of ${EVIDENCE_TYPES.join(', ')}`);
  }
  return { platformId, publicKeyPem, wrappedKey, registeredAt, evidenceType, registeredBy };
}

function normalisePem(pem: string): string {
  return pem.trim() + '\n';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(source: string, reason: string, cause?: unknown): CasError {
  return new CasError('KEY_STORE_INVALID', `Invalid key store ${source}: ${reason}`, cause === undefined ? undefined : { cause });
}
