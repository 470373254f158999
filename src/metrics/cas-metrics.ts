import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEventInput } from '../audit/index.js';

/**
 * Names of every CAS-specific Prometheus metric, documented in docs/operations.md. Tests scrape a real
 * server and check each name, so a rename shows up as a failing test and a documentation change.
 */
export const METRIC_NAMES = {
  info: 'cas_info',
  role: 'cas_role',
  leaseHeld: 'cas_lease_held',
  sessions: 'cas_sessions',
  attestations: 'cas_attestations_total',
  rejections: 'cas_request_rejections_total',
  configurationReleases: 'cas_configuration_releases_total',
  sessionOperations: 'cas_session_operations_total',
  requestDuration: 'cas_http_request_duration_seconds',
  snapshotNewestTimestamp: 'cas_snapshot_newest_timestamp_seconds',
  snapshotNewestAge: 'cas_snapshot_newest_age_seconds',
  snapshotDuration: 'cas_snapshot_duration_seconds',
  snapshotFailures: 'cas_snapshot_failures_total',
  auditAppendDuration: 'cas_audit_append_duration_seconds',
  auditEntries: 'cas_audit_entries_total',
  webhookQueueLength: 'cas_audit_webhook_queue_length',
  webhookQueueFull: 'cas_audit_webhook_queue_full',
  webhookDeliveries: 'cas_audit_webhook_deliveries_total',
  webhookDropped: 'cas_audit_webhook_dropped_total',
} as const;

export type CasRole = 'unprovisioned' | 'primary' | 'standby';

/**
 * Server state that the metrics read from the running CAS server at scrape time. In a high-availability
 * process the server is attached while this instance is primary and detached while it is a standby.
 */
export interface MetricsServerView {
  role(): CasRole;
  leaseHeld(): boolean;
  sessionCount(): number;
  /** Creation time of the newest valid snapshot, if any. */
  newestSnapshotAt(): Date | undefined;
}

/** Reads the audit webhook's queue at scrape time. */
export interface MetricsWebhookView {
  queueLength(): number;
  queueFull(): boolean;
}

/**
 * An unlabelled gauge that is absent from a scrape while `read` returns undefined. A plain prom-client
 * gauge without labels always exposes a value (0 after a reset), which would read as a fresh snapshot or
 * an empty database on a standby.
 */
class OptionalGauge extends Gauge {
  constructor(
    configuration: { name: string; help: string; registers: Registry[] },
    private readonly read: () => number | undefined,
  ) {
    super(configuration);
  }

  override async get(): ReturnType<Gauge['get']> {
    const value = this.read();
    if (value === undefined) return { ...(await super.get()), values: [] };
    this.set(value);
    return super.get();
  }
}

/** Seconds: from fast loopback requests up to attestation with collateral fetching. */
const REQUEST_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds: an fsync is usually below 10 ms; batches under load wait for the previous fsync. */
const AUDIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** Seconds: a snapshot copies the whole database file. */
const SNAPSHOT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The Prometheus metrics of one `cas serve` process, in their own registry (not prom-client's global
 * one), so tests can run several servers in one process. Process metrics (CPU, memory, event loop lag)
 * come from prom-client's default collectors.
 */
export class CasMetrics {
  readonly registry = new Registry();
  private server: MetricsServerView | undefined;
  private webhook: MetricsWebhookView | undefined;

  readonly attestations: Counter<'tee' | 'result'>;
  readonly rejections: Counter<'code'>;
  readonly configurationReleases: Counter;
  readonly sessionOperations: Counter<'operation' | 'outcome'>;
  readonly requestDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly snapshotDuration: Histogram;
  readonly snapshotFailures: Counter;
  readonly auditAppendDuration: Histogram<'result'>;
  readonly auditEntries: Counter<'event'>;
  readonly webhookDeliveries: Counter<'result'>;
  readonly webhookDropped: Counter;

  constructor(options: { version: string; mode: 'simulation' | 'hardware' }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    const info = new Gauge({ name: METRIC_NAMES.info, help: 'Always 1; the labels carry the CAS version and mode (simulation or hardware).', labelNames: ['version', 'mode'], registers });
    info.set({ version: options.version, mode: options.mode }, 1);

    const view = (): MetricsServerView | undefined => this.server;
    new Gauge({
      name: METRIC_NAMES.role,
      help: 'Role of this CAS instance: 1 for the current role (unprovisioned, primary or standby), 0 for the others.',
      labelNames: ['role'],
      registers,
      collect() {
        const current = view()?.role() ?? 'standby';
        for (const role of ['unprovisioned', 'primary', 'standby'] as const) this.set({ role }, role === current ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC_NAMES.leaseHeld,
      help: 'Whether this instance holds a valid primary lease (1) or not (0). Without high availability (--lease none) an open server counts as holding it.',
      registers,
      collect() {
        this.set(view()?.leaseHeld() === true ? 1 : 0);
      },
    });
    new OptionalGauge({ name: METRIC_NAMES.sessions, help: 'Number of sessions in the database; absent on a standby, which has no database open.', registers }, () => view()?.sessionCount());
    new OptionalGauge(
      { name: METRIC_NAMES.snapshotNewestTimestamp, help: 'Creation time of the newest valid snapshot, in seconds since the Unix epoch; absent when there is none.', registers },
      () => {
        const newest = view()?.newestSnapshotAt();
        return newest === undefined ? undefined : newest.getTime() / 1000;
      },
    );
    new OptionalGauge(
      { name: METRIC_NAMES.snapshotNewestAge, help: 'Seconds since the newest valid snapshot was created; absent when there is none. Alert when it exceeds a few snapshot intervals.', registers },
      () => {
        const newest = view()?.newestSnapshotAt();
        return newest === undefined ? undefined : Math.max(0, (Date.now() - newest.getTime()) / 1000);
      },
    );

    this.attestations = new Counter({ name: METRIC_NAMES.attestations, help: 'Service attestations by TEE type (sgx-dcap, tdx, sev-snp, simulated, unknown) and result (accepted or rejected).', labelNames: ['tee', 'result'], registers });
    this.rejections = new Counter({ name: METRIC_NAMES.rejections, help: 'API requests that failed, by the error code of the response (for example PERMISSION_DENIED, EVIDENCE_INVALID).', labelNames: ['code'], registers });
    this.configurationReleases = new Counter({ name: METRIC_NAMES.configurationReleases, help: 'Configurations released to attested services.', registers });
    this.sessionOperations = new Counter({ name: METRIC_NAMES.sessionOperations, help: 'Session operations recorded in the audit log, by operation (created, updated, deleted, read) and outcome.', labelNames: ['operation', 'outcome'], registers });
    this.requestDuration = new Histogram({ name: METRIC_NAMES.requestDuration, help: 'Duration of API requests in seconds, by method, route template and status code.', labelNames: ['method', 'route', 'status_code'], buckets: REQUEST_BUCKETS, registers });
    this.snapshotDuration = new Histogram({ name: METRIC_NAMES.snapshotDuration, help: 'Duration of successful database snapshots in seconds.', buckets: SNAPSHOT_BUCKETS, registers });
    this.snapshotFailures = new Counter({ name: METRIC_NAMES.snapshotFailures, help: 'Failed database snapshots; the first failure stops the CAS.', registers });
    this.auditAppendDuration = new Histogram({ name: METRIC_NAMES.auditAppendDuration, help: 'Time from an audit append request until its line is written and fsynced, in seconds, by result (success or failure).', labelNames: ['result'], buckets: AUDIT_BUCKETS, registers });
    this.auditEntries = new Counter({ name: METRIC_NAMES.auditEntries, help: 'Audit entries appended, by event type.', labelNames: ['event'], registers });

    const webhook = (): MetricsWebhookView | undefined => this.webhook;
    new OptionalGauge({ name: METRIC_NAMES.webhookQueueLength, help: 'Audit entries waiting for delivery to the audit webhook; absent without --audit-webhook.', registers }, () => webhook()?.queueLength());
    new OptionalGauge(
      { name: METRIC_NAMES.webhookQueueFull, help: 'Whether the audit webhook queue is full (1), so that new entries are dropped for the webhook (the audit log keeps them); absent without --audit-webhook.', registers },
      () => {
        const queue = webhook();
        return queue === undefined ? undefined : queue.queueFull() ? 1 : 0;
      },
    );
    this.webhookDeliveries = new Counter({ name: METRIC_NAMES.webhookDeliveries, help: 'Delivery attempts to the audit webhook, by result (delivered, retry, failed).', labelNames: ['result'], registers });
    this.webhookDropped = new Counter({ name: METRIC_NAMES.webhookDropped, help: 'Audit entries not forwarded to the webhook because its queue was full or delivery failed after every retry.', registers });
  }

  /** Makes the scrape read role, lease and counts from `view` until the returned function detaches it. */
  attachServer(view: MetricsServerView): () => void {
    this.server = view;
    return () => {
      if (this.server === view) this.server = undefined;
    };
  }

  attachWebhook(view: MetricsWebhookView): void {
    this.webhook = view;
  }

  /** Counts one appended audit entry by event, and attestations, releases and session operations among them. */
  recordAuditEntry(entry: AuditEventInput): void {
    this.auditEntries.inc({ event: entry.event });
    switch (entry.event) {
      case 'service.attested':
        this.attestations.inc({ tee: entry.details.evidenceType, result: 'accepted' });
        break;
      case 'service.rejected':
        this.attestations.inc({ tee: entry.details.evidenceType ?? 'unknown', result: 'rejected' });
        break;
      case 'config.released':
        this.configurationReleases.inc();
        break;
      case 'session.created':
      case 'session.updated':
      case 'session.deleted':
      case 'session.read':
        this.sessionOperations.inc({ operation: entry.event.slice('session.'.length), outcome: entry.outcome });
        break;
      default:
        break;
    }
  }

  /** Returns the text exposition format (version 0.0.4) and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
