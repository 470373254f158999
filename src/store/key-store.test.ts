import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { KeyStore } from './key-store.js';
import { unwrapKeyWithPrivateKey } from './key-wrap.js';
import { platformIdFromPublicKeyPem } from './platform.js';

const root = mkdtempSync(join(tmpdir(), 'cas-key-store-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

function newPlatformKey(): { privateKey: import('node:crypto').KeyObject; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const isInvalid = (error: unknown): boolean => isCasError(error, 'KEY_STORE_INVALID');

describe('KeyStore', () => {
  const databaseKey = randomBytes(32);
  const primary = newPlatformKey();
  const backup = newPlatformKey();
  const registeredAt = new Date('2026-01-02T03:04:05.000Z');

  function twoEntryStore(): KeyStore {
    const store = KeyStore.create(databaseKey, { publicKeyPem: primary.publicKeyPem, evidenceType: 'simulation', registeredBy: 'initial', registeredAt });
    store.addPlatform(databaseKey, { publicKeyPem: backup.publicKeyPem, evidenceType: 'sgx', registeredBy: 'owner-key-hash', registeredAt });
    return store;
  }

  it('round-trips through the file and unwraps for each platform', () => {
    const path = join(root, 'round-trip.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    const read = KeyStore.read(path);
    read.verifyMac(databaseKey, path);
    const entries = read.entries();
    assert.equal(entries.length, 2);
    assert.equal(entries[0]!.platformId, platformIdFromPublicKeyPem(primary.publicKeyPem));
    assert.equal(entries[1]!.evidenceType, 'sgx');
    assert.equal(entries[1]!.registeredBy, 'owner-key-hash');
    assert.equal(entries[1]!.registeredAt, '2026-01-02T03:04:05.000Z');
    assert.deepEqual(unwrapKeyWithPrivateKey(primary.privateKey, entries[0]!.platformId, entries[0]!.wrappedKey), databaseKey);
    assert.deepEqual(unwrapKeyWithPrivateKey(backup.privateKey, entries[1]!.platformId, entries[1]!.wrappedKey), databaseKey);
  });

  it('writes mode 0600 and leaves no temporary file', () => {
    const dir = mkdtempSync(join(root, 'atomic-'));
    const path = join(dir, 'cas.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    twoEntryStore().writeAtomic(path, databaseKey);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['cas.key-store']);
  });

  it('adds an already registered platform only once', () => {
    const store = twoEntryStore();
    const again = store.addPlatform(databaseKey, { publicKeyPem: backup.publicKeyPem, evidenceType: 'tdx', registeredBy: 'someone else' });
    assert.equal(again.added, false);
    assert.equal(again.entry.evidenceType, 'sgx');
    assert.equal(store.entries().length, 2);
    assert.equal(store.addEntry(store.entries()[1]!), false);
  });

  it('removes an entry', () => {
    const store = twoEntryStore();
    const backupId = platformIdFromPublicKeyPem(backup.publicKeyPem);
    assert.equal(store.removeEntry(backupId), true);
    assert.equal(store.removeEntry(backupId), false);
    assert.equal(store.entry(backupId), undefined);
  });

  it('detects an edited field through the MAC', () => {
    const path = join(root, 'edited.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    const document = JSON.parse(readFileSync(path, 'utf8'));
    document.entries[1].registeredBy = 'attacker';
    writeFileSync(path, JSON.stringify(document));
    const read = KeyStore.read(path);
    assert.throws(() => read.verifyMac(databaseKey, path), isInvalid);
  });

  it('detects a removed entry through the MAC', () => {
    const path = join(root, 'removed.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    const document = JSON.parse(readFileSync(path, 'utf8'));
    document.entries.pop();
    writeFileSync(path, JSON.stringify(document));
    assert.throws(() => KeyStore.read(path).verifyMac(databaseKey, path), isInvalid);
  });

  it('rejects a MAC checked with another database key', () => {
    const path = join(root, 'other-key.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    assert.throws(() => KeyStore.read(path).verifyMac(randomBytes(32), path), isInvalid);
  });

  it('rejects a truncated file at many lengths', () => {
    const path = join(root, 'whole.key-store');
    twoEntryStore().writeAtomic(path, databaseKey);
    const bytes = readFileSync(path);
    for (let length = 0; length < bytes.length - 1; length += 37) {
      assert.throws(() => KeyStore.parse(bytes.subarray(0, length), 'truncated'), isInvalid, `length ${length}`);
    }
  });

  it('rejects a missing file, another version and a mismatched platform id', () => {
    assert.throws(() => KeyStore.read(join(root, 'absent')), (error: unknown) => isInvalid(error) && /does not exist/.test((error as Error).message));
    const bytes = twoEntryStore().serialize(databaseKey);
    const document = JSON.parse(bytes.toString());
    assert.throws(() => KeyStore.parse(Buffer.from(JSON.stringify({ ...document, version: 3 })), 'v3'), /unsupported version 3/);
    const swappedId = structuredClone(document);
    swappedId.entries[0].platformId = document.entries[1].platformId;
    assert.throws(() => KeyStore.parse(Buffer.from(JSON.stringify(swappedId)), 'swapped'), isInvalid);
    const badEvidence = structuredClone(document);
    badEvidence.entries[0].evidenceType = 'tpm';
    assert.throws(() => KeyStore.parse(Buffer.from(JSON.stringify(badEvidence)), 'evidence'), /evidence type "tpm"/);
    const empty = { ...document, entries: [] };
    assert.throws(() => KeyStore.parse(Buffer.from(JSON.stringify(empty)), 'empty'), isInvalid);
  });

  it('rejects an unknown evidence type on registration', () => {
    const store = twoEntryStore();
    assert.throws(
      () => store.addPlatform(databaseKey, { publicKeyPem: newPlatformKey().publicKeyPem, evidenceType: 'tpm' as 'sgx', registeredBy: 'x' }),
      (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'),
    );
  });
});
