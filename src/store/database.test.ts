import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { isCasError, type ErrorCode } from '../errors/cas-error.js';
import { CasDatabase } from './database.js';
import { loadOrCreateSimulationPlatform } from './platform.js';
import type { Platform, SessionRecord } from './types.js';

const execFileAsync = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'cas-database-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = (label: string): string => join(root, `${label}-${(counter += 1)}`);

function session(name: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    name,
    hash: 'a1b2c3',
    text: `name: ${name}\nversion: "0.3"\n`,
    creatorKeyHash: 'creator-key-hash',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    secrets: { password: 'p' },
    ...overrides,
  };
}

function withCode(code: ErrorCode, pattern?: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(isCasError(error, code), `expected ${code}, got ${String(error)}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

async function newDatabase(label: string): Promise<{ dataDir: string; platformDir: string; platform: Platform; db: CasDatabase }> {
  const dataDir = freshDir(label);
  const platformDir = freshDir(`${label}-platform`);
  const platform = await loadOrCreateSimulationPlatform(platformDir);
  return { dataDir, platformDir, platform, db: CasDatabase.open({ dataDir, platform }) };
}

/** Runs an ES module script in a new Node.js process and returns its standard output. */
async function runNode(script: string): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  return stdout;
}

function storedFiles(dataDir: string): Buffer[] {
  return readdirSync(dataDir).map((name) => readFileSync(join(dataDir, name)));
}

describe('CasDatabase.open', () => {
  it('creates the database and key store with private modes', async () => {
    const { dataDir, platform, db } = await newDatabase('create');
    assert.equal(db.platformId, platform.id);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(statSync(db.paths.database).mode & 0o777, 0o600);
    assert.equal(statSync(db.paths.keyStore).mode & 0o777, 0o600);
    await db.writeGate.run(() => db.putSession(session('modes')));
    assert.equal(statSync(`${db.paths.database}-wal`).mode & 0o777, 0o600);
    const entries = db.listPlatforms();
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.platformId, platform.id);
    assert.equal(entries[0]!.evidenceType, 'simulation');
    assert.equal(entries[0]!.registeredBy, 'initial');
    db.close();
  });

  it('reopens with the same platform and keeps the data', async () => {
    const { dataDir, platform, db } = await newDatabase('reopen');
    await db.writeGate.run(() => db.putSession(session('kept')));
    db.close();
    const reopened = CasDatabase.open({ dataDir, platform });
    assert.deepEqual(reopened.getSession('kept'), session('kept'));
    reopened.close();
  });

  it('fails when only one of the two files exists', async () => {
    const first = await newDatabase('only-db');
    first.db.close();
    rmSync(first.db.paths.keyStore);
    assert.throws(() => CasDatabase.open({ dataDir: first.dataDir, platform: first.platform }), withCode('KEY_STORE_INVALID', /cas\.key-store is missing/));

    const second = await newDatabase('only-key-store');
    second.db.close();
    rmSync(second.db.paths.database);
    assert.throws(() => CasDatabase.open({ dataDir: second.dataDir, platform: second.platform }), withCode('DATABASE_ERROR', /cas\.db is missing/));
  });

  it('fails with DECRYPTION_FAILED naming cas.db for another database key', async () => {
    const a = await newDatabase('wrong-key-a');
    a.db.close();
    const b = CasDatabase.open({ dataDir: freshDir('wrong-key-b'), platform: a.platform });
    b.close();
    copyFileSync(b.paths.keyStore, a.db.paths.keyStore);
    assert.throws(() => CasDatabase.open({ dataDir: a.dataDir, platform: a.platform }), withCode('DECRYPTION_FAILED', /cas\.db/));
  });

  it('fails with KEY_STORE_INVALID for a truncated key store', async () => {
    const { dataDir, platform, db } = await newDatabase('truncated');
    db.close();
    const size = statSync(db.paths.keyStore).size;
    truncateSync(db.paths.keyStore, Math.floor(size / 2));
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('KEY_STORE_INVALID', /cas\.key-store/));
    truncateSync(db.paths.keyStore, 0);
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('KEY_STORE_INVALID'));
  });

  it('fails with DECRYPTION_FAILED naming the key store for an altered wrapped key', async () => {
    const { dataDir, platform, db } = await newDatabase('altered-wrap');
    db.close();
    const document = JSON.parse(readFileSync(db.paths.keyStore, 'utf8'));
    const wrapped = Buffer.from(document.entries[0].wrappedKey, 'base64');
    wrapped[wrapped.length - 1] = wrapped[wrapped.length - 1]! ^ 1;
    document.entries[0].wrappedKey = wrapped.toString('base64');
    writeFileSync(db.paths.keyStore, JSON.stringify(document));
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('DECRYPTION_FAILED', /cas\.key-store/));
  });

  it('fails with KEY_STORE_INVALID for an edited key store entry', async () => {
    const { dataDir, platform, db } = await newDatabase('edited-entry');
    db.close();
    const document = JSON.parse(readFileSync(db.paths.keyStore, 'utf8'));
    document.entries[0].registeredAt = '2020-01-01T00:00:00.000Z';
    writeFileSync(db.paths.keyStore, JSON.stringify(document));
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('KEY_STORE_INVALID', /MAC verification failed/));
  });

  it('fails with DATABASE_ERROR for a file that is not a database', async () => {
    const { dataDir, platform, db } = await newDatabase('not-sqlite');
    db.close();
    writeFileSync(db.paths.database, Buffer.alloc(8192, 0x41));
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('DATABASE_ERROR'));
  });

  it('fails with DATABASE_ERROR when quick_check finds damage', async () => {
    const { dataDir, platform, db } = await newDatabase('damaged');
    await db.writeGate.run(() => db.transaction(() => {
      for (let index = 0; index < 200; index += 1) db.putSession(session(`damaged/${index}`));
    }));
    db.close();
    const bytes = readFileSync(db.paths.database);
    const pageSize = bytes.readUInt16BE(16);
    // Overwrite the b-tree header of the last page (never page 1, which contains the schema).
    bytes.fill(0xff, bytes.length - pageSize, bytes.length - pageSize + 12);
    writeFileSync(db.paths.database, bytes);
    assert.throws(() => CasDatabase.open({ dataDir, platform }), withCode('DATABASE_ERROR'));
  });

  it('fails while another connection has it open', async () => {
    const { dataDir, platform, db } = await newDatabase('locked');
    assert.throws(() => CasDatabase.open({ dataDir, platform, busyTimeoutMs: 50 }), withCode('DATABASE_ERROR', /locked by another process/));
    assert.throws(() => CasDatabase.open({ dataDir, platform, busyTimeoutMs: 50, readOnly: true }), withCode('DATABASE_ERROR', /locked/));
    db.close();
    const reopened = CasDatabase.open({ dataDir, platform, busyTimeoutMs: 50 });
    reopened.close();
  });

  it('opens read-only without writing', async () => {
    const { dataDir, platform, db } = await newDatabase('read-only');
    await db.writeGate.run(() => db.putSession(session('ro')));
    db.close();
    const before = readFileSync(join(dataDir, 'cas.db'));
    const readOnly = CasDatabase.open({ dataDir, platform, readOnly: true });
    assert.equal(readOnly.getSession('ro')?.name, 'ro');
    await assert.rejects(readOnly.writeGate.run(() => readOnly.putSession(session('x'))), withCode('DATABASE_ERROR', /read-only/));
    readOnly.close();
    assert.deepEqual(readFileSync(join(dataDir, 'cas.db')), before);
    assert.throws(() => CasDatabase.open({ dataDir: freshDir('absent'), platform, readOnly: true }), withCode('DATABASE_ERROR'));
  });
});

describe('CasDatabase encryption at rest', () => {
  it('leaves no plaintext in any file', async () => {
    const { dataDir, db } = await newDatabase('scan');
    const names = ['scan-namespace/confidential-session-one', 'confidential-session-two'];
    const needles = [
      ...names,
      'SECRETVALUE-Zq93kLx',
      'PASSWORD-7h2Jd0',
      'yaml-only-text-marker',
      'creator-hash-marker-5521',
      'meta-value-marker-8812',
      'owner_key_marker',
      'cas database key check',
    ];
    await db.writeGate.run(() => {
      db.putSession(session(names[0]!, { text: 'services: yaml-only-text-marker', secrets: { a: 'SECRETVALUE-Zq93kLx' }, creatorKeyHash: 'creator-hash-marker-5521' }));
      db.putSession(session(names[1]!, { secrets: { b: 'PASSWORD-7h2Jd0' }, data: { note: 'SECRETVALUE-Zq93kLx' } }));
      db.putMeta('owner_key_marker', Buffer.from('meta-value-marker-8812'));
    });
    const binarySecret = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    await db.writeGate.run(() => db.putMeta('binary', binarySecret));

    // The writes stay in the WAL until a checkpoint, so scan it before and the database file after.
    const scan = (when: string): void => {
      const files = storedFiles(dataDir);
      assert.ok(files.length >= 2, `files at ${when}`);
      for (const bytes of files) {
        for (const needle of needles) {
          for (const encoding of ['utf8', 'utf16le'] as const) {
            assert.equal(bytes.includes(Buffer.from(needle, encoding)), false, `${needle} (${encoding}) found ${when}`);
          }
          assert.equal(bytes.includes(Buffer.from(Buffer.from(needle).toString('base64').slice(0, 16))), false, `${needle} (base64) found ${when}`);
        }
        assert.equal(bytes.includes(binarySecret), false, `binary secret found ${when}`);
      }
    };
    assert.ok(existsSync(`${db.paths.database}-wal`));
    scan('before checkpoint');
    db.checkpoint();
    scan('after checkpoint');
    assert.deepEqual(db.listSessionNames(), [...names].sort());
    db.close();
    scan('after close');
  });

  it('rejects a tampered ciphertext with DECRYPTION_FAILED', async () => {
    const { dataDir, platform, db } = await newDatabase('tamper');
    await db.writeGate.run(() => db.putSession(session('tampered')));
    db.close();
    const raw = new Database(join(dataDir, 'cas.db'));
    const row = raw.prepare('SELECT lookup, name, value FROM sessions').get() as { lookup: Buffer; name: Buffer; value: Buffer };
    row.value[20] = row.value[20]! ^ 0x01;
    raw.prepare('UPDATE sessions SET value = ? WHERE lookup = ?').run(row.value, row.lookup);
    raw.close();
    const reopened = CasDatabase.open({ dataDir, platform });
    assert.throws(() => reopened.getSession('tampered'), withCode('DECRYPTION_FAILED', /sessions row \(value\)/));
    assert.deepEqual(reopened.listSessionNames(), ['tampered']);
    reopened.close();

    const rawAgain = new Database(join(dataDir, 'cas.db'));
    row.name[row.name.length - 1] = row.name[row.name.length - 1]! ^ 0x01;
    rawAgain.prepare('UPDATE sessions SET name = ? WHERE lookup = ?').run(row.name, row.lookup);
    rawAgain.close();
    const reopenedAgain = CasDatabase.open({ dataDir, platform });
    assert.throws(() => reopenedAgain.listSessionNames(), withCode('DECRYPTION_FAILED', /sessions row \(name\)/));
    reopenedAgain.close();
  });

  it('rejects values swapped between rows and tables', async () => {
    const { dataDir, platform, db } = await newDatabase('swap');
    await db.writeGate.run(() => {
      db.putSession(session('first', { secrets: { k: 'one' } }));
      db.putSession(session('second', { secrets: { k: 'two' } }));
      db.putMeta('setting', Buffer.from('value'));
    });
    db.close();
    const raw = new Database(join(dataDir, 'cas.db'));
    const sessions = raw.prepare('SELECT lookup, value FROM sessions').all() as Array<{ lookup: Buffer; value: Buffer }>;
    const meta = raw.prepare('SELECT lookup, value FROM meta').get() as { lookup: Buffer; value: Buffer };
    const update = raw.prepare('UPDATE sessions SET value = ? WHERE lookup = ?');
    update.run(sessions[1]!.value, sessions[0]!.lookup);
    update.run(meta.value, sessions[1]!.lookup);
    raw.prepare('UPDATE meta SET value = ? WHERE lookup = ?').run(sessions[0]!.value, meta.lookup);
    raw.close();
    const reopened = CasDatabase.open({ dataDir, platform });
    assert.throws(() => reopened.getSession('first'), withCode('DECRYPTION_FAILED'));
    assert.throws(() => reopened.getSession('second'), withCode('DECRYPTION_FAILED'));
    assert.throws(() => reopened.getMeta('setting'), withCode('DECRYPTION_FAILED'));
    reopened.close();

    const swapNames = new Database(join(dataDir, 'cas.db'));
    const names = swapNames.prepare('SELECT lookup, name FROM sessions').all() as Array<{ lookup: Buffer; name: Buffer }>;
    swapNames.prepare('UPDATE sessions SET name = ? WHERE lookup = ?').run(names[1]!.name, names[0]!.lookup);
    swapNames.close();
    const withSwappedNames = CasDatabase.open({ dataDir, platform });
    assert.throws(() => withSwappedNames.listSessionNames(), withCode('DECRYPTION_FAILED', /name/));
    withSwappedNames.close();
  });
});

describe('CasDatabase sessions and meta', () => {
  it('stores, lists, counts and deletes sessions', async () => {
    const { db } = await newDatabase('sessions');
    await db.writeGate.run(() => {
      db.putSession(session('b/two', { predecessor: 'x', data: { parsed: true } }));
      db.putSession(session('a/one'));
    });
    assert.deepEqual(db.listSessionNames(), ['a/one', 'b/two']);
    assert.equal(db.countSessions(), 2);
    assert.deepEqual(db.getSession('b/two'), session('b/two', { predecessor: 'x', data: { parsed: true } }));
    assert.equal(db.getSession('missing'), undefined);
    await db.writeGate.run(() => db.putSession(session('a/one', { hash: 'new' })));
    assert.equal(db.getSession('a/one')?.hash, 'new');
    assert.equal(db.countSessions(), 2);
    assert.equal(await db.writeGate.run(() => db.deleteSession('a/one')), true);
    assert.equal(await db.writeGate.run(() => db.deleteSession('a/one')), false);
    assert.deepEqual(db.listSessionNames(), ['b/two']);
    db.close();
  });

  it('stores meta values of boundary lengths', async () => {
    const { db } = await newDatabase('meta');
    for (const length of [0, 1, 16, 65536]) {
      const value = Buffer.alloc(length, 7);
      await db.writeGate.run(() => db.putMeta(`m${length}`, value));
      assert.deepEqual(db.getMeta(`m${length}`), value);
    }
    assert.equal(db.getMeta('absent'), undefined);
    assert.equal(await db.writeGate.run(() => db.deleteMeta('m0')), true);
    assert.equal(db.getMeta('m0'), undefined);
    db.close();
  });

  it('rejects records that are not JSON', async () => {
    const { db } = await newDatabase('not-json');
    await assert.rejects(db.writeGate.run(() => db.putSession(session('big', { secrets: { n: 1n } }))), withCode('INVALID_ARGUMENT', /JSON/));
    await assert.rejects(db.writeGate.run(() => db.putSession(session(''))), withCode('INVALID_ARGUMENT', /non-empty name/));
    assert.equal(db.countSessions(), 0);
    assert.equal(db.changeCounter(), 0);
    db.close();
  });

  it('rejects writes outside the write gate', async () => {
    const { db } = await newDatabase('outside-gate');
    assert.throws(() => db.putSession(session('x')), withCode('INTERNAL', /writeGate\.run/));
    assert.throws(() => db.putMeta('x', Buffer.alloc(1)), withCode('INTERNAL'));
    assert.throws(() => db.deleteSession('x'), withCode('INTERNAL'));
    db.close();
  });

  it('rolls back a failed transaction and its counter change', async () => {
    const { db } = await newDatabase('rollback');
    const before = db.changeCounter();
    class Abort extends Error {}
    await assert.rejects(
      db.writeGate.run(() =>
        db.transaction(() => {
          db.putSession(session('rolled-back'));
          throw new Abort('abort');
        }),
      ),
      Abort,
    );
    assert.equal(db.getSession('rolled-back'), undefined);
    assert.equal(db.changeCounter(), before);
    db.close();
  });

  it('rejects use after close', async () => {
    const { db } = await newDatabase('closed');
    db.close();
    db.close();
    assert.throws(() => db.getSession('x'), withCode('DATABASE_ERROR', /closed/));
    assert.throws(() => db.deriveApplicationKey('cas/v1/app/audit'), withCode('DATABASE_ERROR', /closed/));
    await assert.rejects(db.writeGate.run(() => db.putMeta('x', Buffer.alloc(1))), withCode('DATABASE_ERROR', /closed/));
  });
});

describe('CasDatabase.changeCounter', () => {
  it('increases on every committed change and persists across restarts', async () => {
    const { dataDir, platform, db } = await newDatabase('counter');
    assert.equal(db.changeCounter(), 0);
    await db.writeGate.run(() => db.putSession(session('one')));
    await db.writeGate.run(() => db.putMeta('m', Buffer.from('v')));
    await db.writeGate.run(() => db.deleteSession('absent'));
    assert.equal(db.changeCounter(), 2);
    await db.writeGate.run(() => db.deleteSession('one'));
    assert.equal(db.changeCounter(), 3);
    db.getSession('one');
    db.getMeta('m');
    db.listSessionNames();
    db.countSessions();
    assert.equal(db.changeCounter(), 3);
    db.close();
    const reopened = CasDatabase.open({ dataDir, platform });
    assert.equal(reopened.changeCounter(), 3);
    reopened.close();
  });
});

describe('CasDatabase platforms', () => {
  it('opens on a second platform only while it has an entry', async () => {
    const { dataDir, platform: primary, db } = await newDatabase('backup');
    await db.writeGate.run(() => db.putSession(session('shared', { secrets: { s: 'v' } })));
    db.close();
    const backupDir = freshDir('backup-platform');
    const backup = await loadOrCreateSimulationPlatform(backupDir);

    const noEntry = withCode('KEY_STORE_NO_ENTRY', new RegExp(`${backup.id}[\\s\\S]*cas backup register --cas URL --platform-dir ${backupDir}`));
    assert.throws(() => CasDatabase.open({ dataDir, platform: backup, platformDir: backupDir }), noEntry);

    const onPrimary = CasDatabase.open({ dataDir, platform: primary });
    const counterBefore = onPrimary.changeCounter();
    const { entry, added } = await onPrimary.writeGate.run(() =>
      onPrimary.addPlatform({ publicKeyPem: backup.publicKeyPem, evidenceType: 'simulation', registeredBy: 'owner-hash' }),
    );
    assert.equal(added, true);
    assert.equal(entry.platformId, backup.id);
    assert.equal(onPrimary.changeCounter(), counterBefore + 1);
    const again = await onPrimary.writeGate.run(() =>
      onPrimary.addPlatform({ publicKeyPem: backup.publicKeyPem, evidenceType: 'simulation', registeredBy: 'owner-hash' }),
    );
    assert.equal(again.added, false);
    assert.deepEqual(onPrimary.listPlatforms().map((e) => e.platformId), [primary.id, backup.id]);
    onPrimary.close();

    const onBackup = CasDatabase.open({ dataDir, platform: backup });
    assert.deepEqual(onBackup.getSession('shared')?.secrets, { s: 'v' });
    onBackup.close();

    const removing = CasDatabase.open({ dataDir, platform: primary });
    assert.throws(() => removing.removePlatform(backup.id), withCode('INTERNAL'));
    assert.equal(await removing.writeGate.run(() => removing.removePlatform(backup.id)), true);
    assert.equal(await removing.writeGate.run(() => removing.removePlatform(backup.id)), false);
    await assert.rejects(removing.writeGate.run(() => removing.removePlatform(primary.id)), withCode('INVALID_ARGUMENT'));
    removing.close();
    assert.throws(() => CasDatabase.open({ dataDir, platform: backup, platformDir: backupDir }), noEntry);
  });
});

describe('CasDatabase.addPlatform failures', () => {
  it('undoes the entry when the key store cannot be written', async () => {
    const { dataDir, platform, db } = await newDatabase('unwritable');
    const other = await loadOrCreateSimulationPlatform(freshDir('unwritable-other'));
    const keyStoreBytes = readFileSync(db.paths.keyStore);
    rmSync(db.paths.keyStore);
    mkdirSync(join(db.paths.keyStore, 'blocker'), { recursive: true });
    const registration = { publicKeyPem: other.publicKeyPem, evidenceType: 'simulation' as const, registeredBy: 'owner' };
    await assert.rejects(db.writeGate.run(() => db.addPlatform(registration)), withCode('DATABASE_ERROR', /cas\.key-store/));
    assert.deepEqual(db.listPlatforms().map((entry) => entry.platformId), [platform.id]);

    rmSync(db.paths.keyStore, { recursive: true });
    writeFileSync(db.paths.keyStore, keyStoreBytes, { mode: 0o600 });
    const { added } = await db.writeGate.run(() => db.addPlatform(registration));
    assert.equal(added, true);
    db.close();
    const onOther = CasDatabase.open({ dataDir, platform: other });
    onOther.close();
  });
});

describe('CasDatabase in two processes', () => {
  it('rejects a second process while the first has it open', async () => {
    const { dataDir, platformDir, db } = await newDatabase('two-processes');
    const databaseModule = new URL('./database.js', import.meta.url).href;
    const platformModule = new URL('./platform.js', import.meta.url).href;
    const script = `
      const { CasDatabase } = await import(${JSON.stringify(databaseModule)});
      const { loadOrCreateSimulationPlatform } = await import(${JSON.stringify(platformModule)});
      const platform = await loadOrCreateSimulationPlatform(${JSON.stringify(platformDir)});
      try {
        CasDatabase.open({ dataDir: ${JSON.stringify(dataDir)}, platform, busyTimeoutMs: 50 }).close();
        console.log('opened');
      } catch (error) {
        console.log(error.code + ' ' + error.message);
      }`;
    const whileOpen = await runNode(script);
    assert.match(whileOpen, /^DATABASE_ERROR .*locked by another process/);
    db.close();
    const afterClose = await runNode(script);
    assert.equal(afterClose.trim(), 'opened');
  });
});

describe('CasDatabase.writeGate', () => {
  it('makes writers wait during a pause while reads continue', async () => {
    const { db } = await newDatabase('gate');
    await db.writeGate.run(() => db.putSession(session('existing')));
    const release = await db.writeGate.pause();
    const counterAtPause = db.changeCounter();
    const writer = db.writeGate.run(() => db.putSession(session('during-pause')));
    for (let turn = 0; turn < 5; turn += 1) await nextTurn();
    assert.equal(db.getSession('during-pause'), undefined);
    assert.equal(db.getSession('existing')?.name, 'existing');
    assert.equal(db.changeCounter(), counterAtPause);
    release();
    await writer;
    assert.equal(db.getSession('during-pause')?.name, 'during-pause');
    assert.equal(db.changeCounter(), counterAtPause + 1);
    db.close();
  });
});

describe('CasDatabase.backupTo and deriveApplicationKey', () => {
  it('writes a copy that opens with the same key store', async () => {
    const { dataDir, platform, db } = await newDatabase('backup-to');
    await db.writeGate.run(() => db.putSession(session('copied')));
    const copyDir = freshDir('copy');
    const release = await db.writeGate.pause();
    try {
      rmSync(copyDir, { recursive: true, force: true });
      await import('node:fs/promises').then((fs) => fs.mkdir(copyDir, { mode: 0o700 }));
      await db.backupTo(join(copyDir, 'cas.db'));
      copyFileSync(join(dataDir, 'cas.key-store'), join(copyDir, 'cas.key-store'));
    } finally {
      release();
    }
    db.close();
    assert.equal(statSync(join(copyDir, 'cas.db')).mode & 0o777, 0o600);
    const copy = CasDatabase.open({ dataDir: copyDir, platform, readOnly: true });
    assert.equal(copy.getSession('copied')?.name, 'copied');
    copy.close();
    assert.deepEqual(readdirSync(copyDir).sort(), ['cas.db', 'cas.key-store']);

    const writable = CasDatabase.open({ dataDir: copyDir, platform });
    await writable.writeGate.run(() => writable.putSession(session('after-restore')));
    assert.deepEqual(writable.listSessionNames(), ['after-restore', 'copied']);
    writable.close();
  });

  it('derives application keys only under the application prefix', async () => {
    const { db } = await newDatabase('app-key');
    const audit = db.deriveApplicationKey('cas/v1/app/audit');
    assert.equal(audit.length, 32);
    assert.deepEqual(db.deriveApplicationKey('cas/v1/app/audit'), audit);
    assert.notDeepEqual(db.deriveApplicationKey('cas/v1/app/other'), audit);
    assert.throws(() => db.deriveApplicationKey('cas/v1/store/value-encryption'), withCode('INTERNAL'));
    assert.throws(() => db.deriveApplicationKey('cas/v1/app/'), withCode('INTERNAL'));
    db.close();
  });
});
