import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { assertAuditIntact, verifyAuditLog } from '../audit/index.js';
import { assertPlatformNotRemoved } from '../backup/removed-platforms.js';
import { FILE_NAMES } from '../config/defaults.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import { IDENTITY_META } from '../server/cas-identity.js';
import { CasDatabase, type Platform } from '../store/index.js';
import { describeFile } from './create-snapshot.js';
import { parseAndVerifyManifest, type SnapshotManifest } from './manifest.js';
import { compareSnapshotNames, isTemporaryName, MANIFEST_FILE, parseSnapshotName } from './names.js';

export type SnapshotStatus = 'valid' | 'invalid' | 'incomplete';

export interface SnapshotListing {
  name: string;
  path: string;
  /**
   * `valid`: the manifest signature verifies and both files have the sizes it records (hashes are checked by
   * `verifySnapshot`). `invalid`: a snapshot name but a missing or bad manifest or file. `incomplete`: the
   * temporary directory of a snapshot that was never finished.
   */
  status: SnapshotStatus;
  /** From the manifest, else from the name; undefined for a temporary directory. */
  createdAt?: string;
  changeCounter?: number;
  databaseBytes?: number;
  problem?: string;
}

/**
 * Lists the snapshots in `snapshotDir`, newest first, then the incomplete ones. Entries that are neither
 * snapshot nor temporary directories are ignored. Throws NOT_FOUND when the directory does not exist.
 */
export async function listSnapshots(snapshotDir: string): Promise<SnapshotListing[]> {
  let names: string[];
  try {
    names = await readdir(snapshotDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CasError('NOT_FOUND', `Snapshot directory ${snapshotDir} does not exist`, { cause: error });
    if (code === 'ENOTDIR') throw new CasError('INVALID_ARGUMENT', `Snapshot directory ${snapshotDir} is not a directory`, { cause: error });
    throw error;
  }

  const complete: SnapshotListing[] = [];
  const incomplete: SnapshotListing[] = [];
  for (const name of names) {
    const path = join(snapshotDir, name);
    if (isTemporaryName(name)) {
      incomplete.push({ name, path, status: 'incomplete', problem: 'temporary directory of a snapshot in progress or not finished' });
    } else if (parseSnapshotName(name) !== undefined) {
      complete.push(await inspectSnapshot(name, path));
    }
  }
  complete.sort((a, b) => compareSnapshotNames(b.name, a.name));
  incomplete.sort((a, b) => b.name.localeCompare(a.name));
  return [...complete, ...incomplete];
}

async function inspectSnapshot(name: string, path: string): Promise<SnapshotListing> {
  const fallback = { name, path, createdAt: parseSnapshotName(name)!.toISOString() };
  try {
    const manifest = await readManifest(path);
    for (const [file, expected] of Object.entries(manifest.files)) {
      const size = (await stat(join(path, file))).size;
      if (size !== expected.size) throw new CasError('SNAPSHOT_INVALID', `${file} has ${size} bytes; the manifest records ${expected.size}`);
    }
    return { name, path, status: 'valid', createdAt: manifest.createdAt, changeCounter: manifest.changeCounter, databaseBytes: manifest.files['cas.db'].size };
  } catch (error) {
    return { ...fallback, status: 'invalid', problem: error instanceof Error ? error.message : String(error) };
  }
}

/** Reads and checks the signature of `<snapshotPath>/manifest.json`. Throws SNAPSHOT_INVALID. */
export async function readManifest(snapshotPath: string): Promise<SnapshotManifest> {
  const path = join(snapshotPath, MANIFEST_FILE);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'it has no manifest.json, so it is not a complete snapshot' : (error as Error).message;
    throw new CasError('SNAPSHOT_INVALID', `Cannot read snapshot ${snapshotPath}: ${reason}`, { cause: error });
  }
  return parseAndVerifyManifest(bytes, path);
}

export interface SnapshotVerification {
  path: string;
  manifest: SnapshotManifest;
  /** Checks that passed, in order, for reports. */
  checks: string[];
  /** Set when a platform was given and the database was opened with its key. */
  opened?: { platformId: string; changeCounter: number; sessions: number };
}

export interface VerifySnapshotOptions {
  /** Open the database with this platform's key and run SQLite's integrity check; skipped when absent. */
  platform?: Platform;
  /** Shown in the KEY_STORE_NO_ENTRY message, so the operator can copy the register command. */
  platformDir?: string;
  /**
   * Audit log file or directory to check against the manifest: it must verify with the manifest's CAS
   * certificate and contain the manifest's audit head, as `cas serve` needs after a restore.
   */
  auditLog?: string;
}

/**
 * Verifies a snapshot: the manifest signature and the size and SHA-256 of each file. With a platform it
 * also checks that this platform may open the database (key store entry, not removed), that the change
 * counter matches the manifest, that the manifest was signed by the CAS identity stored in the database,
 * and that `PRAGMA integrity_check` returns ok. Throws SNAPSHOT_INVALID, KEY_STORE_NO_ENTRY (naming the
 * platform id), PLATFORM_NOT_REGISTERED, DECRYPTION_FAILED or DATABASE_ERROR.
 */
export async function verifySnapshot(snapshotPath: string, options: VerifySnapshotOptions = {}): Promise<SnapshotVerification> {
  const manifest = await readManifest(snapshotPath);
  const checks = ['manifest signature'];

  for (const [file, expected] of Object.entries(manifest.files)) {
    const actual = await describeFile(join(snapshotPath, file)).catch((error: unknown) => {
      throw new CasError('SNAPSHOT_INVALID', `Snapshot ${snapshotPath} is missing ${file}: ${(error as Error).message}`, { cause: error });
    });
    if (actual.size !== expected.size || actual.sha256 !== expected.sha256) {
      throw new CasError('SNAPSHOT_INVALID', `Snapshot ${snapshotPath}: ${file} does not match the manifest (SHA-256 ${actual.sha256}, ${actual.size} bytes; expected ${expected.sha256}, ${expected.size} bytes)`, {
        details: { file, expected, actual },
      });
    }
    checks.push(`${file} SHA-256`);
  }
  if (options.auditLog !== undefined) {
    await checkAuditLog(options.auditLog, manifest);
    checks.push(`audit log reaches seq ${manifest.audit?.seq ?? 0}`);
  }
  if (options.platform === undefined) return { path: snapshotPath, manifest, checks };

  const db = CasDatabase.open({ dataDir: snapshotPath, platform: options.platform, readOnly: true, ...(options.platformDir === undefined ? {} : { platformDir: options.platformDir }) });
  let opened: SnapshotVerification['opened'];
  try {
    assertPlatformNotRemoved(db);
    checks.push(`opened with the key of platform ${options.platform.id}`);
    const changeCounter = db.changeCounter();
    if (changeCounter !== manifest.changeCounter) {
      throw new CasError('SNAPSHOT_INVALID', `Snapshot ${snapshotPath}: the database has change counter ${changeCounter}; the manifest records ${manifest.changeCounter}`);
    }
    checks.push('change counter');
    checkIdentity(db, manifest, snapshotPath);
    checks.push('manifest signed by the CAS identity in the database');
    opened = { platformId: options.platform.id, changeCounter, sessions: db.countSessions() };
  } finally {
    db.close();
  }
  runIntegrityCheck(join(snapshotPath, FILE_NAMES.database));
  checks.push('SQLite integrity_check');
  return { path: snapshotPath, manifest, checks, opened };
}

/**
 * Verifies the audit log with the manifest's CAS certificate and checks that it contains the manifest's
 * head with the same hash. Throws the AUDIT_* error of the first problem.
 */
async function checkAuditLog(auditLog: string, manifest: SnapshotManifest): Promise<void> {
  const result = await verifyAuditLog({
    files: [auditLog],
    casCertificatePem: manifest.casCertificate,
    ...(manifest.audit === undefined ? {} : { expectedHead: manifest.audit }),
  });
  assertAuditIntact(result);
}

/** The manifest is only as trustworthy as its certificate: it must be the identity stored in the database. */
function checkIdentity(db: CasDatabase, manifest: SnapshotManifest, snapshotPath: string): void {
  const stored = db.getMeta(IDENTITY_META);
  if (stored === undefined) {
    throw new CasError('SNAPSHOT_INVALID', `Snapshot ${snapshotPath}: the database has no CAS identity, so the manifest signer cannot be checked`);
  }
  const identity = JSON.parse(stored.toString('utf8')) as { certificatePem?: unknown };
  if (typeof identity.certificatePem !== 'string' || identity.certificatePem.trim() !== manifest.casCertificate.trim()) {
    throw new CasError('SNAPSHOT_INVALID', `Snapshot ${snapshotPath}: the manifest was signed by another CAS identity than the one stored in the database`);
  }
}

/** Runs `PRAGMA integrity_check` on a read-only connection. Throws SNAPSHOT_INVALID with SQLite's report. */
export function runIntegrityCheck(databasePath: string): void {
  let connection: Database.Database | undefined;
  try {
    connection = new Database(databasePath, { readonly: true, fileMustExist: true });
    const rows = connection.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const report = rows.map((row) => row.integrity_check);
    if (report.length !== 1 || report[0] !== 'ok') {
      throw new CasError('SNAPSHOT_INVALID', `SQLite integrity_check of ${databasePath} failed: ${report.slice(0, 5).join('; ')}`);
    }
  } catch (error) {
    if (isCasError(error)) throw error;
    throw new CasError('SNAPSHOT_INVALID', `SQLite integrity_check of ${databasePath} failed: ${(error as Error).message}`, { cause: error });
  } finally {
    connection?.close();
  }
}
