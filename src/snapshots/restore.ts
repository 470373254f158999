import { constants as fsConstants } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FILE_NAMES } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import type { Platform } from '../store/index.js';
import { describeFile, syncDirectory } from './create-snapshot.js';
import { verifySnapshot, type SnapshotVerification } from './inspect.js';

/**
 * File that `restoreSnapshot` leaves in the data directory. On its next start `cas serve` records the
 * restore in the audit log, logs how old the restored state is, and removes the file.
 */
export const RESTORE_MARKER_FILE = 'cas.restored-from.json';

export interface RestoreMarker {
  snapshot: string;
  snapshotPath: string;
  /** When the snapshot was taken (ISO 8601). */
  snapshotCreatedAt: string;
  changeCounter: number;
  databaseSha256: string;
  restoredAt: string;
  platformId: string;
}

export interface RestoreOptions {
  dataDir: string;
  platform: Platform;
  platformDir?: string;
  /** Audit log to check against the manifest before restoring (see VerifySnapshotOptions.auditLog). */
  auditLog?: string;
  /** Replace an existing database in a non-empty data directory; the replaced files are moved aside, not deleted. */
  force?: boolean;
  now?: () => Date;
}

export interface RestoreResult {
  verification: SnapshotVerification;
  dataDir: string;
  /** Directory that received the replaced files with --force; undefined when nothing was replaced. */
  replacedDir?: string;
  marker: RestoreMarker;
}

/**
 * Restores a snapshot into `dataDir` for this platform:
 *
 * 1. Verify the snapshot completely with this platform's key (`verifySnapshot`), so a platform that is not
 *    registered fails here with KEY_STORE_NO_ENTRY naming its id.
 * 2. Reject a non-empty `dataDir` (RESTORE_TARGET_NOT_EMPTY) unless `force`; with `force`, move the old
 *    cas.db, its -wal and -shm files and cas.key-store into `replaced-<time>/`.
 * 3. Copy cas.db, then cas.key-store, each through a temporary file that is hashed against the manifest,
 *    fsynced and renamed; fsync the directory; write the restore marker.
 */
export async function restoreSnapshot(snapshotPath: string, options: RestoreOptions): Promise<RestoreResult> {
  const now = options.now ?? (() => new Date());
  const verification = await verifySnapshot(snapshotPath, {
    platform: options.platform,
    ...(options.platformDir === undefined ? {} : { platformDir: options.platformDir }),
    ...(options.auditLog === undefined ? {} : { auditLog: options.auditLog }),
  });
  const { manifest } = verification;

  const replacedDir = await prepareDataDir(options.dataDir, options.force ?? false, now());
  for (const file of [FILE_NAMES.database, FILE_NAMES.keyStore] as const) {
    await copyVerified(join(snapshotPath, file), join(options.dataDir, file), manifest.files[file]);
  }

  const marker: RestoreMarker = {
    snapshot: manifest.name,
    snapshotPath,
    snapshotCreatedAt: manifest.createdAt,
    changeCounter: manifest.changeCounter,
    databaseSha256: manifest.files['cas.db'].sha256,
    restoredAt: now().toISOString(),
    platformId: options.platform.id,
  };
  await writeSynced(join(options.dataDir, RESTORE_MARKER_FILE), Buffer.from(JSON.stringify(marker, undefined, 2) + '\n', 'utf8'));
  await syncDirectory(options.dataDir);
  return { verification, dataDir: options.dataDir, ...(replacedDir === undefined ? {} : { replacedDir }), marker };
}

/** Reads the restore marker of a data directory; undefined when there is none. */
export async function readRestoreMarker(dataDir: string): Promise<RestoreMarker | undefined> {
  try {
    return JSON.parse(await readFile(join(dataDir, RESTORE_MARKER_FILE), 'utf8')) as RestoreMarker;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CasError('DATABASE_ERROR', `Cannot read restore marker ${join(dataDir, RESTORE_MARKER_FILE)}: ${(error as Error).message}`, { cause: error });
  }
}

export async function removeRestoreMarker(dataDir: string): Promise<void> {
  await rm(join(dataDir, RESTORE_MARKER_FILE), { force: true });
  await syncDirectory(dataDir);
}

const DATABASE_FILES = [FILE_NAMES.database, `${FILE_NAMES.database}-wal`, `${FILE_NAMES.database}-shm`, FILE_NAMES.keyStore, RESTORE_MARKER_FILE];

async function prepareDataDir(dataDir: string, force: boolean, time: Date): Promise<string | undefined> {
  let entries: string[] = [];
  try {
    const info = await stat(dataDir);
    if (!info.isDirectory()) throw new CasError('INVALID_ARGUMENT', `Restore target ${dataDir} is not a directory`);
    entries = await readdir(dataDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (entries.length > 0 && !force) {
    throw new CasError('RESTORE_TARGET_NOT_EMPTY', `Restore target ${dataDir} is not empty (${entries.slice(0, 5).join(', ')}); choose an empty directory or pass --force to replace its database`, {
      details: { dataDir, entries: entries.slice(0, 20) },
    });
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });

  const present = DATABASE_FILES.filter((file) => entries.includes(file));
  if (present.length === 0) return undefined;
  const replacedDir = join(dataDir, `replaced-${time.toISOString().replace(/[-:]/g, '')}`);
  await mkdir(replacedDir, { mode: 0o700 });
  for (const file of present) await rename(join(dataDir, file), join(replacedDir, file));
  await syncDirectory(dataDir);
  return replacedDir;
}

async function copyVerified(source: string, destination: string, expected: { size: number; sha256: string }): Promise<void> {
  const temporary = `${destination}.restore-${process.pid}.tmp`;
  try {
    await copyFile(source, temporary, fsConstants.COPYFILE_EXCL);
    const handle = await open(temporary, 'r+');
    try {
      await handle.chmod(0o600);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const actual = await describeFile(temporary);
    if (actual.sha256 !== expected.sha256 || actual.size !== expected.size) {
      throw new CasError('SNAPSHOT_INVALID', `The copy of ${source} does not match the manifest (SHA-256 ${actual.sha256}); the snapshot changed during the restore`);
    }
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

async function writeSynced(path: string, bytes: Buffer): Promise<void> {
  const handle = await open(path, fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_WRONLY, 0o600);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
