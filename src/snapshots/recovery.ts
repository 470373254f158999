import { resolve } from 'node:path';
import type { ServerSettings } from '../config/settings.js';
import type { Logger } from '../logging/logger.js';
import { openPlatform } from '../store/index.js';
import { restoreSnapshot, type RestoreResult } from './restore.js';

/**
 * `cas serve --cas-database-recovery SNAPSHOT`: verifies the snapshot with this platform's key and restores
 * it into the data directory before the server opens it. An existing database is moved aside into
 * `<data-dir>/replaced-<time>/`, never deleted. The server then records the restore in the audit log.
 */
export async function recoverFromSnapshot(snapshotPath: string, settings: ServerSettings, logger: Logger): Promise<RestoreResult> {
  const platform = await openPlatform({ mode: settings.mode, platformDir: settings.platformDir, logger });
  const result = await restoreSnapshot(resolve(snapshotPath), { dataDir: settings.dataDir, platform, platformDir: settings.platformDir, force: true });
  const ageSeconds = Math.max(0, Math.round((Date.now() - Date.parse(result.marker.snapshotCreatedAt)) / 1000));
  logger.warn(
    { snapshot: result.marker.snapshot, snapshotCreatedAt: result.marker.snapshotCreatedAt, ageSeconds, changeCounter: result.marker.changeCounter, dataDir: settings.dataDir, replacedDir: result.replacedDir },
    'restored the database from a snapshot; changes made after the snapshot was taken are lost',
  );
  return result;
}
