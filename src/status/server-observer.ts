import type { AuditEventInput, AuditHead } from '../audit/index.js';
import type { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasMetrics, CasRole } from '../metrics/cas-metrics.js';
import { listSnapshots } from '../snapshots/inspect.js';
import type { SnapshotResult } from '../snapshots/create-snapshot.js';
import type { RestoreMarker } from '../snapshots/restore.js';
import type { CasApp } from '../server/app-types.js';
import { processAuditWebhook } from '../webhook/audit-webhook.js';
import type { WebhookStatus } from './status-types.js';

/** Outcome of the newest snapshot attempt of this process, for `cas status`. */
export type SnapshotAttempt =
  | { result: 'success'; at: string; snapshot: string; durationMs: number }
  | { result: 'failure'; at: string; code: string; message: string };

/** A forwarder of appended audit entries: the audit webhook. */
export interface AuditEntrySink {
  enqueue(entry: AuditEventInput & AuditHead & { time: string }): void;
  status(): WebhookStatus;
}

/** Anything with the AuditLog's `append`; the observer replaces `append` on that object. */
interface AppendTarget {
  append(input: AuditEventInput): Promise<AuditHead>;
}

/**
 * Collects what `GET /v1/status` and the Prometheus metrics report about one CAS server: request
 * latencies and rejections, audit appends, snapshot attempts. The server creates one observer and calls
 * its hooks; the metrics are optional (`cas serve --no-metrics`, or servers created in tests).
 */
export class ServerObserver {
  private lastAttempt: SnapshotAttempt | undefined;
  private newestSnapshot: Date | undefined;
  private restore: RestoreMarker | undefined;
  private detachMetrics: (() => void) | undefined;

  constructor(
    readonly metrics: CasMetrics | undefined,
    private readonly logger: Logger,
    private readonly auditSink: AuditEntrySink | undefined = processAuditWebhook(),
  ) {}

  /** Queue state of the audit webhook, or null without one. */
  webhookStatus(): WebhookStatus | null {
    return this.auditSink?.status() ?? null;
  }

  /** Adds request hooks: a latency histogram per route template, and a count of error responses by code. */
  instrument(app: CasApp): void {
    const metrics = this.metrics;
    if (metrics === undefined) return;
    app.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode >= 400 && typeof payload === 'string') {
        const code = errorCodeOf(payload);
        if (code !== undefined) metrics.rejections.inc({ code });
      }
      return payload;
    });
    app.addHook('onResponse', async (request, reply) => {
      metrics.requestDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });
  }

  /**
   * Wraps `audit.append`: every append is timed, and every entry that reached the disk is counted and
   * handed to the audit sink (the webhook). Call it before the first append.
   */
  watchAudit(audit: AppendTarget): void {
    const append = audit.append.bind(audit);
    audit.append = async (input: AuditEventInput): Promise<AuditHead> => {
      const stopTimer = this.metrics?.auditAppendDuration.startTimer();
      let head: AuditHead;
      try {
        head = await append(input);
      } catch (error) {
        stopTimer?.({ result: 'failure' });
        throw error;
      }
      stopTimer?.({ result: 'success' });
      this.metrics?.recordAuditEntry(input);
      this.auditSink?.enqueue({ ...input, ...head, time: new Date().toISOString() });
      return head;
    };
  }

  /** Reads the newest valid snapshot in `snapshotDir` once at start-up; later snapshots update it. */
  async loadNewestSnapshot(snapshotDir: string): Promise<void> {
    try {
      const newest = (await listSnapshots(snapshotDir)).find((entry) => entry.status === 'valid' && entry.createdAt !== undefined);
      if (newest?.createdAt !== undefined) this.newestSnapshot = new Date(newest.createdAt);
    } catch (error) {
      // A missing directory means no snapshot yet; the scheduler creates it.
      this.logger.debug({ err: error, snapshotDir }, 'no snapshot directory to read the newest snapshot from');
    }
  }

  /** Records that this process started from a restored snapshot, for `restoredFrom` in the status. */
  restored(marker: RestoreMarker): void {
    this.restore = marker;
  }

  /** Returns the snapshot this process started from and how old its state was then; undefined after a normal start. */
  restoredFrom(): { snapshot: string; snapshotCreatedAt: string; restoredAt: string; ageSecondsAtRestore: number } | undefined {
    const marker = this.restore;
    if (marker === undefined) return undefined;
    const ageSecondsAtRestore = Math.max(0, Math.round((Date.parse(marker.restoredAt) - Date.parse(marker.snapshotCreatedAt)) / 1000));
    return { snapshot: marker.snapshot, snapshotCreatedAt: marker.snapshotCreatedAt, restoredAt: marker.restoredAt, ageSecondsAtRestore };
  }

  snapshotSucceeded(result: SnapshotResult): void {
    this.lastAttempt = { result: 'success', at: new Date().toISOString(), snapshot: result.name, durationMs: result.durationMs };
    this.newestSnapshot = new Date(result.manifest.createdAt);
    this.metrics?.snapshotDuration.observe(result.durationMs / 1000);
  }

  snapshotFailed(error: CasError): void {
    this.lastAttempt = { result: 'failure', at: new Date().toISOString(), code: error.code, message: error.message };
    this.metrics?.snapshotFailures.inc();
  }

  get lastSnapshotAttempt(): SnapshotAttempt | undefined {
    return this.lastAttempt;
  }

  get newestSnapshotAt(): Date | undefined {
    return this.newestSnapshot;
  }

  /** Lets scrapes read role, lease state and session count from the server until `detach()`. */
  attach(view: { role(): CasRole; leaseHeld(): boolean; sessionCount(): number }): void {
    this.detachMetrics = this.metrics?.attachServer({ ...view, newestSnapshotAt: () => this.newestSnapshot });
  }

  detach(): void {
    this.detachMetrics?.();
    this.detachMetrics = undefined;
  }
}

/** Returns the `error.code` of a CAS error body (see http-errors.ts), or undefined for other bodies. */
function errorCodeOf(payload: string): string | undefined {
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : undefined;
  } catch {
    return undefined;
  }
}
