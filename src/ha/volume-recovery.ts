import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FILE_NAMES } from '../config/defaults.js';
import type { ServerSettings } from '../config/settings.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { listSnapshots, type SnapshotListing } from '../snapshots/inspect.js';
import { recoverFromSnapshot } from '../snapshots/recovery.js';
import type { RestoreResult } from '../snapshots/restore.js';

/**
 * Restores the newest valid snapshot when the database volume was lost: the data directory has neither
 * cas.db nor cas.key-store, but the snapshot directory (its own volume) has valid snapshots. Snapshots
 * are tried newest first, and each is verified with this platform's key before it is copied in. The age of
 * the restored state is logged here and again, with an audit entry, when the server opens the database.
 *
 * Returns undefined without touching anything when the database exists or when there is no valid snapshot
 * (a first start). Throws SNAPSHOT_INVALID when valid snapshots exist but none can be restored, rather than
 * starting an empty CAS over data that may still be recoverable.
 *
 * Call it only while holding the primary lease, so that no other instance uses the data directory.
 */
export async function restoreIfDatabaseLost(settings: ServerSettings, logger: Logger): Promise<RestoreResult | undefined> {
  const database = join(settings.dataDir, FILE_NAMES.database);
  const keyStore = join(settings.dataDir, FILE_NAMES.keyStore);
  if (existsSync(database) || existsSync(keyStore)) return undefined;

  let snapshots: SnapshotListing[];
  try {
    snapshots = await listSnapshots(settings.snapshotDir);
  } catch (error) {
    if (isCasError(error, 'NOT_FOUND')) return undefined;
    throw error;
  }
  const valid = snapshots.filter((snapshot) => snapshot.status === 'valid');
  if (valid.length === 0) {
    if (snapshots.length > 0) {
      logger.warn({ snapshotDir: settings.snapshotDir, snapshots: snapshots.map((s) => ({ name: s.name, status: s.status, problem: s.problem })) }, 'the database is missing and no snapshot is valid; starting with an empty database');
    }
    return undefined;
  }

  logger.warn({ dataDir: settings.dataDir, snapshotDir: settings.snapshotDir, validSnapshots: valid.length }, 'the database is missing from the data directory; restoring the newest valid snapshot');
  const failures: Array<{ snapshot: string; error: string }> = [];
  for (const candidate of valid) {
    try {
      const result = await recoverFromSnapshot(candidate.path, settings, logger);
      logger.warn(
        { snapshot: candidate.name, snapshotCreatedAt: result.marker.snapshotCreatedAt, ageSeconds: ageSeconds(result.marker.snapshotCreatedAt), skippedSnapshots: failures.length },
        'restored the newest valid snapshot automatically after the database was lost',
      );
      return result;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      failures.push({ snapshot: candidate.name, error: message });
      logger.error({ snapshot: candidate.name, err: error }, 'restoring a snapshot failed; trying the next older one');
    }
  }
  throw new CasError(
    'SNAPSHOT_INVALID',
    `The database in ${settings.dataDir} is missing and none of the ${valid.length} valid snapshots in ${settings.snapshotDir} could be restored (${failures.map((f) => `${f.snapshot}: ${f.error}`).join('; ')}). Fix the cause and restart, or choose one with cas serve --cas-database-recovery SNAPSHOT.`,
    { details: { failures } },
  );
}

function ageSeconds(createdAt: string): number {
  return Math.max(0, Math.round((Date.now() - Date.parse(createdAt)) / 1000));
}
