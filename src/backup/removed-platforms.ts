import { CasError } from '../errors/cas-error.js';
import type { CasDatabase } from '../store/index.js';

/**
 * Meta value (encrypted in cas.db) that lists the platforms removed as backup targets, for `cas backup list`
 * and as a second check. Removal deletes the platform's key store entry and rotates the database key, so a
 * key store saved before the removal no longer opens a later database. Should a rotation be missing (a
 * database restored from a copy made between a removal and its rotation), this list still makes a CAS
 * reject the removed platform.
 */
export const REMOVED_PLATFORMS_META = 'backup.removed-platforms';

export interface RemovedPlatform {
  platformId: string;
  /** ISO 8601 time of removal. */
  removedAt: string;
  /** Key hash of the CAS owner who removed it. */
  removedBy: string;
}

export function readRemovedPlatforms(db: CasDatabase): RemovedPlatform[] {
  const stored = db.getMeta(REMOVED_PLATFORMS_META);
  if (stored === undefined) return [];
  const parsed = JSON.parse(stored.toString('utf8')) as unknown;
  if (!Array.isArray(parsed)) throw new CasError('DATABASE_ERROR', `The meta value ${REMOVED_PLATFORMS_META} in ${db.paths.database} is not a list`);
  return parsed as RemovedPlatform[];
}

/** Stores the list; the caller runs inside the write gate and a transaction. */
export function writeRemovedPlatforms(db: CasDatabase, list: RemovedPlatform[]): void {
  db.putMeta(REMOVED_PLATFORMS_META, Buffer.from(JSON.stringify(list), 'utf8'));
}

/**
 * Throws PLATFORM_NOT_REGISTERED naming the platform id when the open database records `platformId` as
 * removed. Call it right after `CasDatabase.open` wherever a database or snapshot is opened.
 */
export function assertPlatformNotRemoved(db: CasDatabase, platformId: string = db.platformId): void {
  const removed = readRemovedPlatforms(db).find((entry) => entry.platformId === platformId);
  if (removed === undefined) return;
  throw new CasError(
    'PLATFORM_NOT_REGISTERED',
    `Platform ${platformId} was removed as a backup target at ${removed.removedAt}, so it may not open database ${db.paths.database}; ` +
      'the key store beside it is older than the removal. Register the platform again with cas backup register if it should be a backup target.',
    { details: { platformId, removedAt: removed.removedAt } },
  );
}
