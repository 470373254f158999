import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { readRemovedPlatforms, writeRemovedPlatforms } from '../backup/removed-platforms.js';
import { isCasError } from '../errors/cas-error.js';
import { silentLogger } from '../logging/logger.js';
import { IDENTITY_META } from '../server/cas-identity.js';
import { CasDatabase, loadOrCreateSimulationPlatform, type Platform, type SessionRecord } from '../store/index.js';
import { createSelfSignedCertificate, type KeyAndCertificate } from '../tls/certificates.js';
import { createSnapshot, describeFile } from './create-snapshot.js';
import { listSnapshots, verifySnapshot } from './inspect.js';
import { MANIFEST_FILE, TEMPORARY_PREFIX } from './names.js';
import { readRestoreMarker, restoreSnapshot } from './restore.js';
import { SnapshotScheduler } from './scheduler.js';

function session(name: string, secret: string): SessionRecord {
  const now = new Date().toISOString();
  return { name, hash: 'a'.repeat(64), text: `name: ${name}`, creatorKeyHash: 'b'.repeat(64), createdAt: now, updatedAt: now, secrets: { password: secret } };
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function isErrorWithCode(code: string, pattern?: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isCasError(error), `expected a CasError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  };
}

describe('snapshots of a live database', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-snapshot-test-'));
  const dataDir = join(root, 'data');
  const snapshotDir = join(root, 'snapshots');
  let primary: Platform;
  let other: Platform;
  let identity: KeyAndCertificate;
  let db: CasDatabase;

  before(async () => {
    primary = await loadOrCreateSimulationPlatform(join(root, 'primary-platform'));
    other = await loadOrCreateSimulationPlatform(join(root, 'other-platform'));
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    db = CasDatabase.open({ dataDir, platform: primary });
    await db.writeGate.run(() => {
      db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8'));
      db.putSession(session('first', 'first-secret-value-1234'));
    });
    mkdirSync(snapshotDir);
  });

  after(() => {
    db.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('writes a complete, verifiable snapshot', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    assert.deepEqual(readdirSync(result.path).sort(), ['cas.db', 'cas.key-store', MANIFEST_FILE]);
    assert.equal(result.manifest.changeCounter, db.changeCounter());
    assert.deepEqual(result.manifest.keyStorePlatforms, [primary.id]);
    assert.ok(result.readOnlyWindowMs >= 0);

    const verification = await verifySnapshot(result.path, { platform: primary });
    assert.equal(verification.opened?.sessions, 1);
    assert.ok(verification.checks.includes('SQLite integrity_check'));
    assert.ok(!existsSync(join(result.path, 'cas.db-wal')), 'a read-only open of a snapshot creates no -wal file');
  });

  it('records the SHA-256 of each copied file', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    for (const file of ['cas.db', 'cas.key-store'] as const) {
      const bytes = readFileSync(join(result.path, file));
      assert.equal(result.manifest.files[file].sha256, sha256(join(result.path, file)), `${file} digest`);
      assert.equal(result.manifest.files[file].size, bytes.length, `${file} size`);
    }
  });

  it('fails and cleans up when copying or hashing fails', async () => {
    // A copy process that starts, copies nothing and reports a read error, as an I/O error in the real one would.
    const failingCopier = join(root, 'failing-copier.mjs');
    writeFileSync(
      failingCopier,
      `process.send({ type: 'ready' });
       process.on('message', () => process.send({ type: 'failed', message: 'EIO: i/o error, read', code: 'EIO' }));`,
    );
    const missingCopier = join(root, 'no-such-copier.js');
    const failing = join(root, 'failing-snapshots');
    mkdirSync(failing);
    await assert.rejects(createSnapshot({ db, identity, snapshotDir: failing, copierModulePath: failingCopier }), isErrorWithCode('SNAPSHOT_FAILED', /Copying or hashing the database failed: EIO/));
    assert.deepEqual(readdirSync(failing), [], 'the temporary directory is removed');
    await assert.rejects(createSnapshot({ db, identity, snapshotDir: failing, copierModulePath: missingCopier }), isErrorWithCode('SNAPSHOT_FAILED', /snapshot copy process exited/));
    assert.deepEqual(readdirSync(failing), [], 'the temporary directory is removed');

    // The write gate was released on both paths.
    await db.writeGate.run(() => db.putMeta('test.after-failed-hash', Buffer.from('1')));
  });

  it('contains no plaintext secret', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    for (const file of readdirSync(result.path)) {
      const bytes = readFileSync(join(result.path, file));
      assert.equal(bytes.indexOf('first-secret-value-1234'), -1, `${file} contains the secret`);
      assert.equal(bytes.indexOf('"first"'), -1, `${file} contains the session name`);
    }
  });

  it('copies a standalone SQLite file', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    const copy = new Database(join(result.path, 'cas.db'), { readonly: true });
    try {
      assert.equal(copy.pragma('journal_mode', { simple: true }), 'delete');
      assert.equal((copy.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n, 1);
    } finally {
      copy.close();
    }
  });

  it('makes writers wait during the copy, not fail', async () => {
    const release = await db.writeGate.pause();
    let written = false;
    const writer = db.writeGate.run(() => {
      db.putSession(session('during-pause', 'x'.repeat(24)));
      written = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(written, false, 'the writer ran while the gate was paused');
    assert.equal(db.countSessions(), 1, 'reads go on while paused');
    release();
    await writer;
    assert.equal(written, true);
  });

  it('keeps every snapshot consistent under concurrent writes', async () => {
    let stop = false;
    let count = 0;
    const writers = [0, 1, 2].map(async (id) => {
      while (!stop) {
        await db.writeGate.run(() => db.putSession(session(`load-${id}-${count++}`, 's'.repeat(24))));
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    const results = [];
    for (let i = 0; i < 4; i += 1) results.push(await createSnapshot({ db, identity, snapshotDir }));
    stop = true;
    await Promise.all(writers);
    assert.ok(count > 0, 'the writers made changes while snapshots were taken');

    for (const result of results) {
      const verification = await verifySnapshot(result.path, { platform: primary });
      assert.equal(verification.opened?.changeCounter, result.manifest.changeCounter);
    }
  });

  it('rejects a tampered manifest', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    const path = join(result.path, MANIFEST_FILE);
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as { changeCounter: number };
    manifest.changeCounter += 1;
    writeFileSync(path, JSON.stringify(manifest));
    await assert.rejects(verifySnapshot(result.path), isErrorWithCode('SNAPSHOT_INVALID', /signature does not verify/));
  });

  it('rejects a flipped byte in cas.db', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    const path = join(result.path, 'cas.db');
    const bytes = readFileSync(path);
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0x01;
    writeFileSync(path, bytes);
    await assert.rejects(verifySnapshot(result.path), isErrorWithCode('SNAPSHOT_INVALID', /cas\.db does not match the manifest/));
  });

  it('rejects a manifest signed by another identity', async () => {
    const stranger = await createSelfSignedCertificate({ commonName: 'other cas', usage: 'server', validDays: 1 });
    const result = await createSnapshot({ db, identity: stranger, snapshotDir });
    await verifySnapshot(result.path);
    await assert.rejects(verifySnapshot(result.path, { platform: primary }), isErrorWithCode('SNAPSHOT_INVALID', /another CAS identity/));
  });

  it('names the platform that is not registered', async () => {
    const result = await createSnapshot({ db, identity, snapshotDir });
    await assert.rejects(verifySnapshot(result.path, { platform: other }), isErrorWithCode('KEY_STORE_NO_ENTRY', new RegExp(other.id)));
  });

  it('fails when the target is missing or a file', async () => {
    await assert.rejects(createSnapshot({ db, identity, snapshotDir: join(root, 'missing') }), isErrorWithCode('SNAPSHOT_FAILED', /does not exist/));
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    await assert.rejects(createSnapshot({ db, identity, snapshotDir: file }), isErrorWithCode('SNAPSHOT_FAILED', /not a directory/));
  });

  it('fails when the target is not writable', { skip: process.getuid?.() === 0 ? 'root may write to any directory' : false }, async () => {
    const readOnlyDir = join(root, 'read-only');
    mkdirSync(readOnlyDir, { mode: 0o500 });
    await assert.rejects(createSnapshot({ db, identity, snapshotDir: readOnlyDir }), isErrorWithCode('SNAPSHOT_FAILED', /not writable/));
  });

  it('lists snapshots newest first and incomplete ones last', async () => {
    mkdirSync(join(snapshotDir, `${TEMPORARY_PREFIX}20260101T000000.000Z-1`));
    const listing = await listSnapshots(snapshotDir);
    const statuses = listing.map((entry) => entry.status);
    assert.equal(statuses.at(-1), 'incomplete');
    assert.ok(statuses.includes('invalid'), 'the tampered snapshots are listed as invalid');
    const complete = listing.filter((entry) => entry.status !== 'incomplete').map((entry) => entry.name);
    assert.deepEqual(complete, [...complete].sort().reverse());
  });
});

describe('describeFile', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-describe-file-test-'));

  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('matches an independent SHA-256', async () => {
    // Empty, shorter than one read, and across several 4 MiB reads with a partial last one.
    for (const size of [0, 5, 9 * 1024 * 1024 + 5]) {
      const path = join(root, `file-${size}`);
      writeFileSync(path, randomBytes(size));
      const digest = await describeFile(path);
      assert.equal(digest.size, size);
      assert.equal(digest.sha256, sha256(path), `digest of ${size} bytes`);
    }
  });
});

describe('snapshot of a larger database under writes', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-snapshot-large-test-'));
  let platform: Platform;
  let identity: KeyAndCertificate;
  let db: CasDatabase;

  before(async () => {
    platform = await loadOrCreateSimulationPlatform(join(root, 'platform'));
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    await db.writeGate.run(() => {
      db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8'));
      // About 24 MiB, so that the copy takes long enough for writers to queue and for the hash to be split
      // between the frozen source and the finished copy.
      db.transaction(() => {
        for (let i = 0; i < 1000; i += 1) db.putSession({ ...session(`bulk-${i}`, 'b'.repeat(24)), text: randomBytes(18 * 1024).toString('base64') });
      });
    });
    db.checkpoint();
    mkdirSync(join(root, 'snapshots'));
  });

  after(() => {
    db.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('verifies and restores a snapshot taken during writes', async () => {
    let stop = false;
    let written = 0;
    const writers = [0, 1].map(async (id) => {
      while (!stop) {
        await db.writeGate.run(() => db.putSession(session(`writer-${id}-${written++}`, 'w'.repeat(24))));
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    let result;
    try {
      result = await createSnapshot({ db, identity, snapshotDir: join(root, 'snapshots') });
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    assert.ok(written > 0, 'the writers made changes around the snapshot');
    assert.ok(result.manifest.files['cas.db'].size > 20 * 1024 * 1024, `cas.db has ${result.manifest.files['cas.db'].size} bytes`);
    assert.equal(result.manifest.files['cas.db'].sha256, sha256(join(result.path, 'cas.db')));

    const verification = await verifySnapshot(result.path, { platform });
    assert.equal(verification.opened?.changeCounter, result.manifest.changeCounter);

    const target = join(root, 'restored');
    await restoreSnapshot(result.path, { dataDir: target, platform });
    const restored = CasDatabase.open({ dataDir: target, platform });
    try {
      assert.equal(restored.changeCounter(), result.manifest.changeCounter);
      assert.deepEqual(restored.getSession('bulk-999')?.secrets, { password: 'b'.repeat(24) });
    } finally {
      restored.close();
    }
  });
});

describe('SnapshotScheduler', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-scheduler-test-'));
  let db: CasDatabase;
  let identity: KeyAndCertificate;
  let recorded = 0;

  before(async () => {
    const platform = await loadOrCreateSimulationPlatform(join(root, 'platform'));
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    await db.writeGate.run(() => db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8')));
  });

  after(() => {
    db.close();
    rmSync(root, { recursive: true, force: true });
  });

  function scheduler(snapshotDir: string, onFatal = (): void => undefined): SnapshotScheduler {
    return new SnapshotScheduler({
      db,
      identity,
      snapshotDir,
      intervalSeconds: 3600,
      retention: { keepLast: 2, keepDays: 0 },
      logger: silentLogger(),
      // Like the server's audit record: a database write of its own after each snapshot.
      record: async () => {
        recorded += 1;
        db.putMeta('test.record', Buffer.from(String(recorded)));
      },
      onFatal,
    });
  }

  it('skips an unchanged database', async () => {
    const snapshots = scheduler(join(root, 'unchanged'));
    await snapshots.start();
    assert.ok(await snapshots.runOnce(), 'the first run takes a snapshot');
    assert.equal(await snapshots.runOnce(), undefined, 'its own record does not count as a change');
    await db.writeGate.run(() => db.putSession(session('changed', 'y'.repeat(24))));
    assert.ok(await snapshots.runOnce(), 'a change leads to a snapshot');
    assert.equal(await snapshots.runOnce(), undefined);
    await snapshots.stop();
  });

  it('resumes from the newest snapshot after a restart', async () => {
    const dir = join(root, 'restart');
    const first = scheduler(dir);
    await first.start();
    await first.runOnce();
    await first.stop();
    // The record after the snapshot changed the database, so a new scheduler sees one change.
    const second = scheduler(dir);
    await second.start();
    assert.ok(await second.runOnce());
    assert.equal(await second.runOnce(), undefined);
    await second.stop();
  });

  it('applies retention and removes crashed attempts', async () => {
    const dir = join(root, 'retention');
    mkdirSync(dir);
    mkdirSync(join(dir, `${TEMPORARY_PREFIX}20200101T000000.000Z-99999`));
    const snapshots = scheduler(dir);
    await snapshots.start();
    assert.equal((await listSnapshots(dir)).length, 0, 'start removes leftover temporary directories');
    for (let i = 0; i < 4; i += 1) {
      await db.writeGate.run(() => db.putSession(session(`retention-${i}`, 'z'.repeat(24))));
      await snapshots.runOnce();
    }
    await snapshots.stop();
    const listing = await listSnapshots(dir);
    assert.equal(listing.length, 2);
    assert.ok(listing.every((entry) => entry.status === 'valid'));
  });

  it('reports a failure once through onFatal', async () => {
    const dir = join(root, 'fatal');
    const failures: string[] = [];
    const snapshots = new SnapshotScheduler({
      db,
      identity,
      snapshotDir: dir,
      intervalSeconds: 1,
      retention: { keepLast: 2, keepDays: 0 },
      logger: silentLogger(),
      onFatal: (error) => failures.push(error.code),
    });
    await snapshots.start();
    rmSync(dir, { recursive: true });
    writeFileSync(dir, 'not a directory');
    await db.writeGate.run(() => db.putSession(session('before-failure', 'w'.repeat(24))));
    const deadline = Date.now() + 20_000;
    while (failures.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await snapshots.stop();
    assert.deepEqual(failures, ['SNAPSHOT_FAILED']);
  });
});

describe('restoreSnapshot', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-restore-test-'));
  let primary: Platform;
  let backup: Platform;
  let snapshotPath = '';
  let identity: KeyAndCertificate;
  let db: CasDatabase;

  before(async () => {
    primary = await loadOrCreateSimulationPlatform(join(root, 'primary-platform'));
    backup = await loadOrCreateSimulationPlatform(join(root, 'backup-platform'));
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    db = CasDatabase.open({ dataDir: join(root, 'data'), platform: primary });
    await db.writeGate.run(() => {
      db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8'));
      db.putSession(session('kept', 'k'.repeat(24)));
      db.addPlatform({ publicKeyPem: backup.publicKeyPem, evidenceType: 'simulation', registeredBy: 'c'.repeat(64) });
    });
    mkdirSync(join(root, 'snapshots'));
    snapshotPath = (await createSnapshot({ db, identity, snapshotDir: join(root, 'snapshots') })).path;
  });

  after(() => {
    db.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('restores on a registered platform', async () => {
    const target = join(root, 'restored');
    const result = await restoreSnapshot(snapshotPath, { dataDir: target, platform: backup });
    assert.equal(result.replacedDir, undefined);
    const marker = await readRestoreMarker(target);
    assert.equal(marker?.changeCounter, result.verification.manifest.changeCounter);
    const restored = CasDatabase.open({ dataDir: target, platform: backup });
    try {
      assert.deepEqual(restored.getSession('kept')?.secrets, { password: 'k'.repeat(24) });
    } finally {
      restored.close();
    }
  });

  it('rejects a non-empty directory without force', async () => {
    const target = join(root, 'occupied');
    mkdirSync(target);
    writeFileSync(join(target, 'cas.db'), 'old database');
    await assert.rejects(restoreSnapshot(snapshotPath, { dataDir: target, platform: backup }), isErrorWithCode('RESTORE_TARGET_NOT_EMPTY', /--force/));
    const result = await restoreSnapshot(snapshotPath, { dataDir: target, platform: backup, force: true });
    assert.ok(result.replacedDir !== undefined);
    assert.equal(readFileSync(join(result.replacedDir, 'cas.db'), 'utf8'), 'old database', 'the replaced file is moved aside');
  });

  it('rejects a removed platform even with an old key store', async () => {
    await db.writeGate.run(() => {
      db.transaction(() => {
        writeRemovedPlatforms(db, [...readRemovedPlatforms(db), { platformId: backup.id, removedAt: new Date().toISOString(), removedBy: 'c'.repeat(64) }]);
        db.removePlatform(backup.id);
      });
    });
    const after = (await createSnapshot({ db, identity, snapshotDir: join(root, 'snapshots') })).path;
    await assert.rejects(restoreSnapshot(after, { dataDir: join(root, 'after-removal'), platform: backup }), isErrorWithCode('KEY_STORE_NO_ENTRY', new RegExp(backup.id)));

    // The database of the later snapshot beside the key store of the earlier one: the key still unwraps,
    // but the database records the removal.
    const mixed = join(root, 'mixed');
    mkdirSync(mixed);
    writeFileSync(join(mixed, 'cas.db'), readFileSync(join(after, 'cas.db')));
    writeFileSync(join(mixed, 'cas.key-store'), readFileSync(join(snapshotPath, 'cas.key-store')));
    const opened = CasDatabase.open({ dataDir: mixed, platform: backup, readOnly: true });
    try {
      const { assertPlatformNotRemoved } = await import('../backup/removed-platforms.js');
      assert.throws(() => assertPlatformNotRemoved(opened), isErrorWithCode('PLATFORM_NOT_REGISTERED', new RegExp(backup.id)));
    } finally {
      opened.close();
    }

    // A snapshot taken before the removal still opens for the removed platform, as documented.
    await verifySnapshot(snapshotPath, { platform: backup });
  });
});

describe('benchmarkSnapshot', () => {
  it('snapshots a database of the requested size', async () => {
    const { benchmarkSnapshot } = await import('./benchmark.js');
    const result = await benchmarkSnapshot({ databaseBytes: 2 * 1024 * 1024 });
    try {
      assert.ok(result.databaseBytes >= 2 * 1024 * 1024, `database has ${result.databaseBytes} bytes`);
      assert.ok(result.durationMs >= result.readOnlyWindowMs);
      assert.ok(existsSync(result.databasePath));
    } finally {
      result.cleanup();
    }
    assert.ok(!existsSync(result.databasePath), 'cleanup removes the temporary directory');
  });
});
