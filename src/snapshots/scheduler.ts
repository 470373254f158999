import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CasError, toCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { createSnapshot, type SnapshotResult, type SnapshotSource } from './create-snapshot.js';
import { listSnapshots } from './inspect.js';
import { isTemporaryName } from './names.js';
import { selectSnapshotsToDelete, type RetentionPolicy } from './retention.js';

export interface SnapshotSchedulerOptions extends SnapshotSource {
  snapshotDir: string;
  intervalSeconds: number;
  retention: RetentionPolicy;
  logger: Logger;
  /**
   * Records a finished snapshot (the audit entry). It runs inside the write gate, so the scheduler can tell
   * the change it makes to the database from changes by other writers.
   */
  record?: (result: SnapshotResult) => Promise<void>;
  /** Called once when a snapshot fails; the scheduler has stopped by then. The owner shuts the CAS down. */
  onFatal: (error: CasError) => void;
  now?: () => Date;
}

/**
 * Takes a snapshot every `intervalSeconds` while the database changes. A tick whose change counter equals
 * the counter of the last snapshot (after the scheduler's own audit record) writes nothing. The first
 * failure stops the scheduler and is passed to `onFatal`. Ticks never overlap: the next one is scheduled
 * when the previous one has finished.
 */
export class SnapshotScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private failed = false;
  /** Change counter that the newest snapshot covers, including the scheduler's own audit record. */
  private coveredCounter: number | undefined;

  constructor(private readonly options: SnapshotSchedulerOptions) {}

  /** Creates the snapshot directory if needed, removes temporary directories left by crashed attempts and starts the timer. */
  async start(): Promise<void> {
    const { snapshotDir, logger } = this.options;
    try {
      await mkdir(snapshotDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw toCasError(error, 'SNAPSHOT_FAILED', `Cannot create snapshot directory ${snapshotDir}`);
    }
    await this.removeTemporaryDirectories();
    const newest = (await listSnapshots(snapshotDir)).find((entry) => entry.status === 'valid');
    this.coveredCounter = newest?.changeCounter;
    logger.info(
      { snapshotDir, intervalSeconds: this.options.intervalSeconds, keepLast: this.options.retention.keepLast, keepDays: this.options.retention.keepDays, newestSnapshot: newest?.name },
      'snapshots enabled',
    );
    this.schedule();
  }

  /** Stops the timer and waits for a snapshot in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Takes a snapshot now unless the database is unchanged; returns undefined when skipped. Throws
   * SNAPSHOT_FAILED (or the error of `record`). Used by the timer and by tests.
   */
  async runOnce(): Promise<SnapshotResult | undefined> {
    const { db, logger } = this.options;
    const counter = db.changeCounter();
    if (counter === this.coveredCounter) {
      logger.debug({ changeCounter: counter }, 'database unchanged since the last snapshot; no snapshot taken');
      return undefined;
    }

    const result = await createSnapshot({ ...this.options, ...(this.options.now === undefined ? {} : { now: this.options.now }) });
    logger.info(
      { snapshot: result.name, path: result.path, changeCounter: result.manifest.changeCounter, readOnlyWindowMs: result.readOnlyWindowMs, durationMs: result.durationMs, databaseBytes: result.manifest.files['cas.db'].size },
      'snapshot created',
    );
    await this.recordSnapshot(result);
    await this.applyRetention();
    return result;
  }

  private async recordSnapshot(result: SnapshotResult): Promise<void> {
    const { db, record } = this.options;
    await db.writeGate.run(async () => {
      const before = db.changeCounter();
      if (record !== undefined) await record(result);
      // Only when no other writer ran since the copy does the new counter belong to the snapshot alone.
      this.coveredCounter = before === result.manifest.changeCounter ? db.changeCounter() : result.manifest.changeCounter;
    });
  }

  private schedule(): void {
    if (this.stopped || this.failed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.options.intervalSeconds * 1000);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.runOnce();
    } catch (error) {
      if (this.stopped && !this.options.db.isOpen) return;
      this.failed = true;
      const failure = toCasError(error, 'SNAPSHOT_FAILED', `Snapshot in ${this.options.snapshotDir} failed`);
      this.options.logger.error({ err: failure, code: failure.code, snapshotDir: this.options.snapshotDir }, 'snapshot failed; CAS stops');
      this.options.onFatal(failure);
    }
  }

  /** Deletes snapshots that the retention policy no longer keeps; a failure to delete is logged, not fatal. */
  private async applyRetention(): Promise<void> {
    const { snapshotDir, logger, retention } = this.options;
    try {
      const listing = await listSnapshots(snapshotDir);
      const doomed = selectSnapshotsToDelete(listing.map((entry) => ({ name: entry.name, valid: entry.status === 'valid' })), retention, (this.options.now ?? (() => new Date()))());
      for (const name of doomed) {
        await rm(join(snapshotDir, name), { recursive: true, force: true });
        logger.info({ snapshot: name }, 'snapshot deleted by retention policy');
      }
      await this.removeTemporaryDirectories();
    } catch (error) {
      logger.error({ err: error, snapshotDir }, 'applying the snapshot retention policy failed; old snapshots were kept');
    }
  }

  /** Removes `.tmp-snapshot-*` directories: attempts that crashed. Only one scheduler writes to a directory. */
  private async removeTemporaryDirectories(): Promise<void> {
    for (const name of await readdir(this.options.snapshotDir)) {
      if (!isTemporaryName(name)) continue;
      await rm(join(this.options.snapshotDir, name), { recursive: true, force: true });
      this.options.logger.warn({ snapshotDir: this.options.snapshotDir, directory: name }, 'removed the temporary directory of an unfinished snapshot');
    }
  }
}
