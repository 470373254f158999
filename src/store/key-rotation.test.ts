import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { isCasError, type ErrorCode } from '../errors/cas-error.js';
import { createSnapshot } from '../snapshots/create-snapshot.js';
import { createSelfSignedCertificate, type KeyAndCertificate } from '../tls/certificates.js';
import { CasDatabase, type RotationStep } from './database.js';
import { deriveStoreSubkeys, hmacSha256 } from './key-derivation.js';
import { KeyStore } from './key-store.js';
import { loadOrCreateSimulationPlatform } from './platform.js';
import type { Platform, SessionRecord } from './types.js';
import { decryptValue } from './value-cipher.js';

const execFileAsync = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'cas-key-rotation-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = (label: string): string => join(root, `${label}-${(counter += 1)}`);

const SESSION_NAMES = ['alpha', 'beta', 'gamma/with slash', 'δ-unicode'];
const META = { 'backup.registrars': '[{"keyHash":"k"}]', 'audit.head': '{"sequence":7}' };

function session(name: string): SessionRecord {
  return {
    name,
    hash: `hash-${name}`,
    text: `name: ${name}\nversion: "0.3"\n`,
    creatorKeyHash: 'creator',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    secrets: { password: `secret of ${name}` },
  };
}

function withCode(code: ErrorCode, pattern?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(isCasError(error, code), `expected ${code}, got ${String(error)}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

/** Checks that every session and meta value written by `fill` is present and intact. */
function assertAllData(db: CasDatabase): void {
  assert.deepEqual(db.listSessionNames(), [...SESSION_NAMES].sort());
  for (const name of SESSION_NAMES) assert.deepEqual(db.getSession(name), session(name));
  for (const [name, value] of Object.entries(META)) assert.equal(db.getMeta(name)?.toString('utf8'), value);
}

async function fill(db: CasDatabase): Promise<void> {
  await db.writeGate.run(() => {
    for (const name of SESSION_NAMES) db.putSession(session(name));
    for (const [name, value] of Object.entries(META)) db.putMeta(name, Buffer.from(value, 'utf8'));
  });
}

/**
 * Decrypts every cell of `databasePath` with `databaseKey` and the store's cipher, as a removed platform's
 * own code could with a key from an old key store. Returns the number of cells that decrypted.
 */
function decryptWithKey(databasePath: string, databaseKey: Buffer): number {
  const keys = deriveStoreSubkeys(databaseKey);
  const sqlite = new Database(databasePath, { readonly: true, fileMustExist: true });
  try {
    let decrypted = 0;
    const cells: Array<{ aad: string; value: Buffer }> = [];
    for (const row of sqlite.prepare('SELECT name, value FROM store_info').all() as Array<{ name: string; value: Buffer }>) {
      cells.push({ aad: `cas/v1/store_info/value/${Buffer.from(row.name, 'ascii').toString('hex')}`, value: row.value });
    }
    for (const table of ['meta', 'sessions']) {
      for (const row of sqlite.prepare(`SELECT lookup, name, value FROM ${table}`).all() as Array<{ lookup: Buffer; name: Buffer; value: Buffer }>) {
        cells.push({ aad: `cas/v1/${table}/name/${row.lookup.toString('hex')}`, value: row.name });
        cells.push({ aad: `cas/v1/${table}/value/${row.lookup.toString('hex')}`, value: row.value });
      }
    }
    assert.ok(cells.length > 10, 'the database has rows to try');
    for (const cell of cells) {
      try {
        decryptValue(keys.valueEncryption, Buffer.from(cell.aad, 'ascii'), cell.value, cell.aad);
        decrypted += 1;
      } catch (error) {
        assert.ok(isCasError(error, 'DECRYPTION_FAILED'), `expected DECRYPTION_FAILED, got ${String(error)}`);
      }
    }
    return decrypted;
  } finally {
    sqlite.close();
  }
}

function lookupsOf(databasePath: string): Buffer[] {
  const sqlite = new Database(databasePath, { readonly: true, fileMustExist: true });
  try {
    return (sqlite.prepare('SELECT lookup FROM sessions').all() as Array<{ lookup: Buffer }>).map((row) => row.lookup);
  } finally {
    sqlite.close();
  }
}

/** Copies a data directory's two files, as a removed platform that kept them would have. */
function copyFiles(fromDir: string, toDir: string, files = ['cas.db', 'cas.key-store']): void {
  mkdirSync(toDir, { recursive: true, mode: 0o700 });
  for (const file of files) copyFileSync(join(fromDir, file), join(toDir, file));
}

interface Setup {
  dataDir: string;
  primary: Platform;
  primaryDir: string;
  removed: Platform;
  remaining: Platform;
}

/** Creates a closed database with data, registered for `removed` and `remaining` besides the primary. */
async function setUp(label: string): Promise<Setup> {
  const dataDir = freshDir(label);
  const primaryDir = freshDir(`${label}-primary`);
  const primary = await loadOrCreateSimulationPlatform(primaryDir);
  const removed = await loadOrCreateSimulationPlatform(freshDir(`${label}-removed`));
  const remaining = await loadOrCreateSimulationPlatform(freshDir(`${label}-remaining`));
  const db = CasDatabase.open({ dataDir, platform: primary });
  await fill(db);
  await db.writeGate.run(() => {
    db.addPlatform({ publicKeyPem: removed.publicKeyPem, evidenceType: 'simulation', registeredBy: 'owner' });
    db.addPlatform({ publicKeyPem: remaining.publicKeyPem, evidenceType: 'simulation', registeredBy: 'owner' });
  });
  db.close();
  return { dataDir, primary, primaryDir, removed, remaining };
}

function unwrapFrom(keyStorePath: string, platform: Platform): Buffer {
  const entry = KeyStore.read(keyStorePath).entry(platform.id);
  assert.ok(entry !== undefined, `key store ${keyStorePath} has an entry for ${platform.id}`);
  return platform.unwrapDatabaseKey(entry);
}

describe('key rotation on platform removal', () => {
  let identity: KeyAndCertificate;
  before(async () => {
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
  });

  it('locks out removed platform and later snapshots', async () => {
    const { dataDir, primary, removed, remaining } = await setUp('remove');
    const savedByRemoved = freshDir('saved-by-removed');
    copyFiles(dataDir, savedByRemoved);
    const oldKey = unwrapFrom(join(savedByRemoved, 'cas.key-store'), removed);
    assert.equal(decryptWithKey(join(dataDir, 'cas.db'), oldKey) > 10, true, 'before removal the old key decrypts everything');

    const db = CasDatabase.open({ dataDir, platform: primary });
    const auditKeyBefore = db.deriveApplicationKey('cas/v1/app/audit-hmac');
    const snapshotDir = freshDir('snapshots');
    mkdirSync(snapshotDir, { mode: 0o700 });
    const before = await createSnapshot({ db, identity, snapshotDir });
    const counterBefore = db.changeCounter();
    assert.equal(await db.writeGate.run(() => db.removePlatform(removed.id)), true);
    assert.equal(db.keyRotationDue, false);
    assert.ok(db.changeCounter() > counterBefore);
    assertAllData(db);
    assert.deepEqual(db.deriveApplicationKey('cas/v1/app/audit-hmac'), auditKeyBefore, 'application keys survive the rotation');
    const afterSnapshot = await createSnapshot({ db, identity, snapshotDir, now: () => new Date(Date.now() + 1000) });
    db.close();

    // The removed platform's own code with the old key: every cell of the current database and of the later
    // snapshot fails with DECRYPTION_FAILED, and the lookup keys it could compute match no row.
    assert.equal(decryptWithKey(join(dataDir, 'cas.db'), oldKey), 0);
    assert.equal(decryptWithKey(join(afterSnapshot.path, 'cas.db'), oldKey), 0);
    const oldLookups = SESSION_NAMES.map((name) => hmacSha256(deriveStoreSubkeys(oldKey).sessionLookup, name).toString('hex'));
    for (const lookup of lookupsOf(join(dataDir, 'cas.db'))) assert.equal(oldLookups.includes(lookup.toString('hex')), false);

    // Through CasDatabase: the new key store has no entry for it (the error names its id), and its old
    // key store beside the new database fails the key check.
    const removedId = new RegExp(removed.id);
    assert.throws(() => CasDatabase.open({ dataDir, platform: removed, readOnly: true }), withCode('KEY_STORE_NO_ENTRY', removedId));
    assert.throws(() => CasDatabase.open({ dataDir: afterSnapshot.path, platform: removed, readOnly: true }), withCode('KEY_STORE_NO_ENTRY', removedId));
    const mixed = freshDir('old-key-store-new-db');
    copyFiles(dataDir, mixed, ['cas.db']);
    copyFileSync(join(savedByRemoved, 'cas.key-store'), join(mixed, 'cas.key-store'));
    assert.throws(() => CasDatabase.open({ dataDir: mixed, platform: removed, readOnly: true }), withCode('DECRYPTION_FAILED', new RegExp(`cas\\.db[\\s\\S]*platform ${removed.id}`)));

    // The primary and the remaining platform open everything.
    for (const platform of [primary, remaining]) {
      for (const dir of [dataDir, afterSnapshot.path]) {
        const opened = CasDatabase.open({ dataDir: dir, platform, readOnly: true });
        assertAllData(opened);
        assert.deepEqual(opened.listPlatforms().map((entry) => entry.platformId).sort(), [primary.id, remaining.id].sort());
        opened.close();
      }
    }

    // A snapshot taken before the removal still opens on the removed platform, under the old key.
    const old = CasDatabase.open({ dataDir: before.path, platform: removed, readOnly: true });
    assertAllData(old);
    old.close();
    assert.ok(decryptWithKey(join(before.path, 'cas.db'), oldKey) > 10);
  });

  it('rotates at next open after skipped rotation', async () => {
    const { dataDir, primary, removed } = await setUp('due');
    const oldKey = unwrapFrom(join(dataDir, 'cas.key-store'), removed);
    const db = CasDatabase.open({ dataDir, platform: primary });
    await db.writeGate.run(() => db.transaction(() => db.removePlatform(removed.id)));
    assert.equal(db.keyRotationDue, true);
    assert.throws(() => db.rotateDatabaseKey(), withCode('INTERNAL'), 'outside the write gate');
    db.close(); // the process stops before the caller's rotateDatabaseKey()
    assert.ok(decryptWithKey(join(dataDir, 'cas.db'), oldKey) > 10);

    const reopened = CasDatabase.open({ dataDir, platform: primary });
    assert.equal(reopened.keyRotationDue, false);
    assertAllData(reopened);
    reopened.close();
    assert.equal(decryptWithKey(join(dataDir, 'cas.db'), oldKey), 0);
  });

  it('keeps the old key when the re-encryption fails', async () => {
    const { dataDir, primary, removed } = await setUp('failed');
    const oldKey = unwrapFrom(join(dataDir, 'cas.key-store'), removed);
    const sqlite = new Database(join(dataDir, 'cas.db'));
    const row = sqlite.prepare('SELECT lookup, value FROM sessions LIMIT 1').get() as { lookup: Buffer; value: Buffer };
    const altered = Buffer.from(row.value);
    altered[altered.length - 1]! ^= 1;
    sqlite.prepare('UPDATE sessions SET value = ? WHERE lookup = ?').run(altered, row.lookup);
    sqlite.close();

    const db = CasDatabase.open({ dataDir, platform: primary });
    await assert.rejects(db.writeGate.run(() => db.removePlatform(removed.id)), withCode('DECRYPTION_FAILED'));
    db.close();
    assert.equal((JSON.parse(readFileSync(join(dataDir, 'cas.key-store'), 'utf8')) as { version: number }).version, 1);

    // The rotation stays due and fails again at each open, which still succeeds under the old key.
    const reopened = CasDatabase.open({ dataDir, platform: primary });
    assert.equal(reopened.keyRotationDue, true);
    assert.equal(reopened.getMeta('audit.head')?.toString('utf8'), META['audit.head']);
    assert.equal(reopened.listSessionNames().length, SESSION_NAMES.length);
    reopened.close();
    assert.ok(decryptWithKey(join(dataDir, 'cas.db'), oldKey) > 10);
  });

  it('rotates on demand, rejects inside transaction', async () => {
    const { dataDir, primary, remaining } = await setUp('on-demand');
    const db = CasDatabase.open({ dataDir, platform: primary });
    const oldKey = unwrapFrom(db.paths.keyStore, primary);
    await assert.rejects(db.writeGate.run(() => db.transaction(() => db.rotateDatabaseKey())), withCode('INTERNAL'));
    const steps: RotationStep[] = [];
    await db.writeGate.run(() => db.rotateDatabaseKey({ onStep: (step) => steps.push(step) }));
    assert.deepEqual(steps, ['staged-key-store', 'database-reencrypted', 'database-committed', 'key-store-finished']);
    assertAllData(db);
    await db.writeGate.run(() => db.putSession(session('after rotation')));
    db.close();
    assert.equal(decryptWithKey(join(dataDir, 'cas.db'), oldKey), 0);
    assert.notDeepEqual(unwrapFrom(join(dataDir, 'cas.key-store'), primary), oldKey);
    const onRemaining = CasDatabase.open({ dataDir, platform: remaining, readOnly: true });
    assert.equal(onRemaining.getSession('after rotation')?.name, 'after rotation');
    onRemaining.close();
  });
});

/**
 * Kills a child process with SIGKILL right after `step` of a removal's rotation, then checks that the
 * database reopens with all data on the primary and the remaining platform, and never on the removed one.
 */
describe('key rotation crash recovery', () => {
  const databaseModule = new URL('./database.js', import.meta.url).href;
  const platformModule = new URL('./platform.js', import.meta.url).href;
  const steps: RotationStep[] = ['staged-key-store', 'database-reencrypted', 'database-committed', 'key-store-finished'];

  for (const step of steps) {
    it(`recovers from SIGKILL after ${step}`, async () => {
      const { dataDir, primary, primaryDir, removed, remaining } = await setUp(`crash-${step}`);
      const oldKey = unwrapFrom(join(dataDir, 'cas.key-store'), removed);
      const script = `
        import { CasDatabase } from ${JSON.stringify(databaseModule)};
        import { loadOrCreateSimulationPlatform } from ${JSON.stringify(platformModule)};
        const platform = await loadOrCreateSimulationPlatform(${JSON.stringify(primaryDir)});
        const db = CasDatabase.open({ dataDir: ${JSON.stringify(dataDir)}, platform });
        await db.writeGate.run(() => {
          db.transaction(() => db.removePlatform(${JSON.stringify(removed.id)}));
          db.rotateDatabaseKey({ onStep: (step) => { if (step === ${JSON.stringify(step)}) process.kill(process.pid, 'SIGKILL'); } });
        });
        process.stdout.write('not killed');
      `;
      await assert.rejects(
        execFileAsync(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }),
        (error: { signal?: string; stdout?: string }) => {
          assert.equal(error.signal, 'SIGKILL');
          assert.equal(error.stdout, '');
          return true;
        },
      );
      const keyStoreVersion = (JSON.parse(readFileSync(join(dataDir, 'cas.key-store'), 'utf8')) as { version: number }).version;
      assert.equal(keyStoreVersion, step === 'key-store-finished' ? 1 : 2, 'the key store on disk after the crash');

      // A read-only open works in the interrupted state and writes nothing.
      const readOnly = CasDatabase.open({ dataDir, platform: remaining, readOnly: true });
      assertAllData(readOnly);
      readOnly.close();
      assert.equal((JSON.parse(readFileSync(join(dataDir, 'cas.key-store'), 'utf8')) as { version: number }).version, keyStoreVersion);

      // The primary's writable open finishes the rotation (or runs it again when it did not commit).
      const reopened = CasDatabase.open({ dataDir, platform: primary });
      assertAllData(reopened);
      assert.equal(reopened.keyRotationDue, false);
      assert.deepEqual(reopened.listPlatforms().map((entry) => entry.platformId).sort(), [primary.id, remaining.id].sort());
      reopened.close();
      assert.equal((JSON.parse(readFileSync(join(dataDir, 'cas.key-store'), 'utf8')) as { version: number }).version, 1);
      assert.equal(decryptWithKey(join(dataDir, 'cas.db'), oldKey), 0);
      assert.throws(() => CasDatabase.open({ dataDir, platform: removed, readOnly: true }), withCode('KEY_STORE_NO_ENTRY', new RegExp(removed.id)));
      const onRemaining = CasDatabase.open({ dataDir, platform: remaining, readOnly: true });
      assertAllData(onRemaining);
      onRemaining.close();
    });
  }

  it('rejects a key store whose next entries were altered', async () => {
    const { dataDir, primary } = await setUp('altered-next');
    // Stage a rotation by hand: the key store with a next key whose MAC covers other entries.
    const db = CasDatabase.open({ dataDir, platform: primary });
    const databaseKey = unwrapFrom(db.paths.keyStore, primary);
    db.close();
    const staged = KeyStore.read(join(dataDir, 'cas.key-store')).withNextKey(Buffer.alloc(32, 7));
    staged.writeAtomic(join(dataDir, 'cas.key-store'), databaseKey);
    const document = JSON.parse(readFileSync(join(dataDir, 'cas.key-store'), 'utf8')) as { next: { entries: Array<{ registeredBy: string }> } };
    document.next.entries[0]!.registeredBy = 'someone else';
    writeFileSync(join(dataDir, 'cas.key-store'), JSON.stringify(document));
    assert.throws(() => CasDatabase.open({ dataDir, platform: primary }), withCode('KEY_STORE_INVALID', /MAC/));
  });
});
