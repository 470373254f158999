import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { IDENTITY_META } from '../server/cas-identity.js';
import { CasDatabase, loadOrCreateSimulationPlatform } from '../store/index.js';
import { createSelfSignedCertificate, type KeyAndCertificate } from '../tls/certificates.js';
import { createSnapshot } from './create-snapshot.js';

const run = promisify(execFile);

/**
 * A second process that opens cas.db with better-sqlite3 in write mode and creates a table. It prints
 * `written`, or the SQLite error code when the database is locked.
 */
const INTRUDER = `
const Database = require(process.argv[1]);
try {
  const db = new Database(process.argv[2], { fileMustExist: true, timeout: 0 });
  db.exec('BEGIN IMMEDIATE');
  db.exec('CREATE TABLE intruder (x)');
  db.exec('COMMIT');
  db.close();
  console.log('written');
} catch (error) {
  console.log(error.code ?? error.message);
}`;

async function writeFromSecondProcess(database: string): Promise<string> {
  const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3');
  const { stdout } = await run(process.execPath, ['-e', INTRUDER, betterSqlite3, database]);
  return stdout.trim();
}

describe('database lock across snapshots', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-snapshot-lock-test-'));
  const snapshotDir = join(root, 'snapshots');
  let identity: KeyAndCertificate;
  let db: CasDatabase;

  before(async () => {
    const platform = await loadOrCreateSimulationPlatform(join(root, 'platform'));
    identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    await db.writeGate.run(() => db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8')));
    mkdirSync(snapshotDir);
  });

  after(() => {
    if (db.isOpen) db.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps a second process from writing cas.db', async () => {
    assert.equal(await writeFromSecondProcess(db.paths.database), 'SQLITE_BUSY', 'locked before any snapshot');

    // With no writer running, the checkpoint empties the WAL, so createSnapshot takes its file-copy path.
    await createSnapshot({ db, identity, snapshotDir });
    assert.equal(await writeFromSecondProcess(db.paths.database), 'SQLITE_BUSY', 'locked after the first snapshot');

    await db.writeGate.run(() => db.putMeta('test.between-snapshots', Buffer.from('1')));
    await createSnapshot({ db, identity, snapshotDir });
    assert.equal(await writeFromSecondProcess(db.paths.database), 'SQLITE_BUSY', 'locked after the second snapshot');
    await db.writeGate.run(() => db.putMeta('test.after-snapshots', Buffer.from('1')));

    // The same process writes once the CAS has closed the database, so the checks above can fail.
    db.close();
    assert.equal(await writeFromSecondProcess(db.paths.database), 'written', 'writable after close');
  });
});
