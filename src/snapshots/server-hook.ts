import type { AuditEventInput, AuditHead } from '../audit/index.js';
import type { ServerSettings } from '../config/settings.js';
import type { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { storeAuditHead } from '../server/audit-setup.js';
import type { CasDatabase } from '../store/index.js';
import type { SnapshotResult } from './create-snapshot.js';
import { readRestoreMarker, removeRestoreMarker, type RestoreMarker } from './restore.js';
import { SnapshotScheduler } from './scheduler.js';

export interface ServerRecoveryOptions {
  settings: ServerSettings;
  db: CasDatabase;
  casIdentity: { privateKeyPem: string; certificatePem: string };
  audit: { append(entry: AuditEventInput): Promise<AuditHead>; head(): AuditHead };
  logger: Logger;
  /** Called once when a snapshot fails; `cas serve` then stops and exits with EXIT.SNAPSHOT_FAILED. */
  onFatal: (error: CasError) => void;
  /** Called after each snapshot is written and recorded, for `cas status` and the metrics. */
  onSnapshot?: (result: SnapshotResult) => void;
  /** Called once when the server starts from a restored snapshot, after the restore is audited. */
  onRestore?: (marker: RestoreMarker) => void;
}

export interface ServerRecovery {
  /** Stops the snapshot timer and waits for a snapshot in progress. Call before closing the database. */
  stop(): Promise<void>;
}

/**
 * Start-up work of `cas serve` for disaster recovery, run after the database and audit log are open:
 * record a restore (from the marker that `restoreSnapshot` leaves) in the audit log, and start the
 * snapshot scheduler unless snapshots are off.
 */
export async function startServerRecovery(options: ServerRecoveryOptions): Promise<ServerRecovery> {
  const { settings, db, audit, logger } = options;
  await recordRestore(options);

  if (!settings.snapshotsEnabled) {
    logger.warn({ dataDir: settings.dataDir }, 'snapshots are disabled (--no-snapshots); the database has no disaster-recovery copies');
    return { stop: async () => undefined };
  }
  const scheduler = new SnapshotScheduler({
    db,
    identity: options.casIdentity,
    auditHead: () => audit.head(),
    snapshotDir: settings.snapshotDir,
    intervalSeconds: settings.snapshotIntervalSeconds,
    retention: {
      keepLast: settings.snapshotKeepLast,
      keepDays: settings.snapshotKeepDays,
    },
    logger: logger.child({ component: 'snapshots' }),
    record: async (result) => {
      const head = await audit.append({
        event: 'snapshot.created',
        actor: { kind: 'cas' },
        target: { snapshot: result.name },
        outcome: 'success',
        details: { databaseSha256: result.manifest.files['cas.db'].sha256 },
      });
      await storeAuditHead(db, head);
      options.onSnapshot?.(result);
    },
    onFatal: options.onFatal,
  });
  await scheduler.start();
  return { stop: () => scheduler.stop() };
}

async function recordRestore(options: ServerRecoveryOptions): Promise<void> {
  const { settings, db, audit, logger } = options;
  const marker = await readRestoreMarker(settings.dataDir);
  if (marker === undefined) return;

  const ageSeconds = Math.max(0, Math.round((Date.now() - Date.parse(marker.snapshotCreatedAt)) / 1000));
  logger.warn(
    { snapshot: marker.snapshot, snapshotCreatedAt: marker.snapshotCreatedAt, ageSeconds, changeCounter: marker.changeCounter, restoredAt: marker.restoredAt },
    'CAS starts from a restored snapshot; changes made after the snapshot was taken are lost',
  );
  const head = await audit.append({
    event: 'restore',
    actor: { kind: 'operator' },
    target: { snapshot: marker.snapshot },
    outcome: 'success',
    details: { databaseSha256: marker.databaseSha256 },
  });
  await storeAuditHead(db, head);
  options.onRestore?.(marker);
  await removeRestoreMarker(settings.dataDir);
}
