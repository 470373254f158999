import { AsyncResource } from 'node:async_hooks';
import type { AuditEventInput, AuditHead } from '../audit/index.js';
import { CasError, isCasError, toCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasDatabase } from '../store/index.js';
import { storeHeadIfNewer } from './audit-setup.js';

/** A change that `GroupCommit.stage` queued. */
export interface StagedChange {
  /** Resolves with the change's audit head once its entry is fsynced and its write is committed. */
  durable: Promise<AuditHead>;
}

interface QueuedChange {
  audited: Promise<AuditHead>;
  write: () => void;
  settled: () => void;
  resolve: (head: AuditHead) => void;
  reject: (error: CasError) => void;
}

/**
 * Group commit for changes that are checked and staged under the write gate but made durable after it is
 * released. `stage` runs inside a writer: it appends the audit entry at once, so entries take sequence
 * numbers in staging order, and queues the database write. A flush waits for the audit entries of
 * everything queued, which the audit log writes with one fsync. Then it takes the gate once and commits all
 * their writes and the newest audit head in one SQLite transaction, so one WAL fsync serves the whole batch.
 *
 * The committed changes are always a prefix of the staging order, because a change may depend on one staged
 * before it (an update of a session whose creation is still queued). A failed audit append or database write
 * therefore rejects that change and every change staged after it that is still queued. A rejected change may
 * leave its audit entry behind, recording a change that the client saw fail, never the reverse.
 *
 * Callers keep their staged state visible to their own checks until `settled` runs. It runs inside the
 * flush's gate turn, right after the change was committed or rejected, so a writer never finds a change
 * neither staged nor committed.
 */
export class GroupCommit {
  private queue: QueuedChange[] = [];
  private flushing: Promise<void> | undefined;
  private transactions = 0;
  private committed = 0;
  /**
   * The async context of the constructor, which runs outside every writer. The flush loop runs in this
   * context, because `writeGate.run` would otherwise count the flush as part of the writer that staged the
   * first change and commit without taking the gate, even while a snapshot pauses it.
   */
  private readonly flushContext = new AsyncResource('GroupCommitFlush');

  constructor(
    private readonly db: CasDatabase,
    private readonly audit: { append(entry: AuditEventInput): Promise<AuditHead> },
    private readonly logger: Logger,
  ) {
    if (db.writeGate.isInsideWriter()) {
      throw new CasError('INTERNAL', 'GroupCommit was created inside a writer, so its flushes would bypass the write gate. Create it outside writeGate.run().');
    }
  }

  /**
   * Appends `entry` to the audit log and queues `write`, a synchronous database change. Must run inside
   * `db.writeGate.run`; the caller awaits `durable` after leaving the gate, since the flush needs the gate.
   */
  stage(entry: AuditEventInput, write: () => void, settled: () => void = () => undefined): StagedChange {
    this.db.writeGate.assertInsideWriter('GroupCommit.stage');
    const audited = this.audit.append(entry);
    // The flush reads the outcome; this keeps a rejection from counting as unhandled before it does.
    audited.catch(() => undefined);
    let resolve!: (head: AuditHead) => void;
    let reject!: (error: CasError) => void;
    const durable = new Promise<AuditHead>((resolveDurable, rejectDurable) => {
      resolve = resolveDurable;
      reject = rejectDurable;
    });
    this.queue.push({ audited, write, settled, resolve, reject });
    this.flushing ??= this.flushContext.runInAsyncScope(() => this.flushLoop());
    return { durable };
  }

  /** Database transactions and changes committed since start; `transactions < committed` shows batching. */
  stats(): { transactions: number; committed: number } {
    return { transactions: this.transactions, committed: this.committed };
  }

  /** Resolves once every change staged so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.flushing !== undefined) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      const outcomes = await Promise.allSettled(batch.map((change) => change.audited));
      try {
        await this.db.writeGate.run(() => this.settle(batch, outcomes));
      } catch (error) {
        // settle handles every expected failure itself; this is a bug, so fail everything still waiting.
        const failure = toCasError(error, 'INTERNAL', 'the group commit failed');
        this.logger.error({ err: failure, changes: batch.length + this.queue.length }, 'group commit failed');
        this.rejectFrom(batch, 0, failure);
        this.rejectFrom(this.queue.splice(0), 0, failure);
      }
    }
    this.flushing = undefined;
  }

  /** Commits the longest prefix of `batch` whose audit entries were written, and rejects the rest. */
  private settle(batch: QueuedChange[], outcomes: PromiseSettledResult<AuditHead>[]): void {
    const firstUnaudited = outcomes.findIndex((outcome) => outcome.status === 'rejected');
    const auditedCount = firstUnaudited === -1 ? batch.length : firstUnaudited;

    let writtenCount = 0;
    let failure: CasError | undefined;
    if (auditedCount > 0) {
      const head = (outcomes[auditedCount - 1] as PromiseFulfilledResult<AuditHead>).value;
      try {
        this.db.transaction(() => {
          for (; writtenCount < auditedCount; writtenCount++) {
            try {
              // A savepoint per change, so a change whose write fails leaves the earlier ones committed.
              this.db.transaction(batch[writtenCount]!.write);
            } catch (error) {
              failure = toCasError(error, 'DATABASE_ERROR', 'the change could not be written to the database');
              break;
            }
          }
          if (writtenCount > 0) storeHeadIfNewer(this.db, (outcomes[writtenCount - 1] as PromiseFulfilledResult<AuditHead>).value);
        });
        this.transactions++;
        this.committed += writtenCount;
      } catch (error) {
        failure = toCasError(error, 'DATABASE_ERROR', `the commit of ${auditedCount} audited changes failed (audit head ${head.seq})`);
        writtenCount = 0;
      }
    }

    for (let index = 0; index < writtenCount; index++) {
      const change = batch[index]!;
      change.settled();
      change.resolve((outcomes[index] as PromiseFulfilledResult<AuditHead>).value);
    }
    if (writtenCount === batch.length) return;

    if (failure === undefined) {
      const rejected = outcomes[writtenCount] as PromiseRejectedResult;
      failure = isCasError(rejected.reason, 'AUDIT_APPEND_FAILED')
        ? rejected.reason
        : toCasError(rejected.reason, 'AUDIT_APPEND_FAILED', 'the audit entry could not be written, so the change was not made');
    } else {
      this.logger.error({ err: failure, committed: writtenCount, rejected: batch.length - writtenCount + this.queue.length }, 'group commit rejected changes after a database failure');
    }
    this.rejectFrom(batch, writtenCount, failure);
    // Changes staged after a rejected one may depend on it.
    this.rejectFrom(this.queue.splice(0), 0, failure);
  }

  private rejectFrom(changes: QueuedChange[], start: number, failure: CasError): void {
    for (let index = start; index < changes.length; index++) {
      const change = changes[index]!;
      change.settled();
      change.reject(failure);
    }
  }
}
