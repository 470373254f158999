import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEventInput, AuditHead } from '../audit/index.js';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasMetrics } from '../metrics/cas-metrics.js';
import type { WebhookStatus } from '../status/status-types.js';

/** An audit entry as the webhook receives it: the entry's fields plus its sequence number, hash and time. */
export type WebhookEntry = AuditEventInput & AuditHead & { time: string };

export interface AuditWebhookOptions {
  /** http or https URL that receives one POST with a JSON body per audit entry. */
  url: string;
  /** Entries waiting for delivery at most; when full, new entries are dropped for the webhook only. */
  capacity?: number;
  /** Delivery attempts per entry before it is dropped. */
  maxAttempts?: number;
  /** Delay before the first retry, doubled for each further retry up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Timeout of one POST. */
  timeoutMs?: number;
  logger: Logger;
  metrics?: CasMetrics;
}

export const DEFAULT_WEBHOOK_CAPACITY = 10_000;

/**
 * Forwards every audit entry to a webhook (`cas serve --audit-webhook URL`), one POST per entry in
 * sequence order, so the sequence numbers a receiver gets have gaps only where entries were dropped. A failed POST (network error,
 * timeout or a status other than 2xx) is retried with exponential backoff; after `maxAttempts` the entry
 * is dropped and counted. The queue is bounded: when it is full, new entries are dropped and counted, the
 * status reports `queueFull`, and `cas_audit_webhook_queue_full` is 1. The audit log on disk keeps every
 * entry in all these cases: the webhook is a copy, not the record.
 */
export class AuditWebhook {
  private readonly queue: WebhookEntry[] = [];
  private readonly capacity: number;
  private sending: Promise<void> | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private delivered = 0;
  private dropped = 0;
  private lastError: string | null = null;
  private fullSince: number | undefined;

  constructor(private readonly options: AuditWebhookOptions) {
    const url = parseWebhookUrl(options.url);
    this.options = { ...options, url: url.href };
    this.capacity = options.capacity ?? DEFAULT_WEBHOOK_CAPACITY;
    options.metrics?.attachWebhook({ queueLength: () => this.queue.length, queueFull: () => this.queue.length >= this.capacity });
  }

  /** Queues an entry for delivery, or drops it (counted and logged once per full period) when the queue is full. */
  enqueue(entry: WebhookEntry): void {
    if (this.stopped) return;
    if (this.queue.length >= this.capacity) {
      this.dropped += 1;
      this.options.metrics?.webhookDropped.inc();
      if (this.fullSince === undefined) {
        this.fullSince = Date.now();
        this.options.logger.error({ url: this.options.url, capacity: this.capacity, seq: entry.seq }, 'audit webhook queue is full; entries are dropped for the webhook until it drains (the audit log keeps them)');
      }
      return;
    }
    this.queue.push(entry);
    this.sending ??= this.sendLoop().finally(() => {
      this.sending = undefined;
    });
  }

  status(): WebhookStatus {
    return {
      url: this.options.url,
      queueLength: this.queue.length,
      queueCapacity: this.capacity,
      queueFull: this.queue.length >= this.capacity,
      delivered: this.delivered,
      dropped: this.dropped,
      lastError: this.lastError,
    };
  }

  /** Waits up to `graceMs` for the queue to drain, then stops; entries still queued are logged as not delivered. */
  async close(graceMs = 2000): Promise<void> {
    const drained = this.sending;
    if (drained !== undefined) await Promise.race([drained, sleep(graceMs)]);
    this.stopped = true;
    this.abort.abort();
    await this.sending?.catch(() => undefined);
    if (this.queue.length > 0) {
      this.options.logger.warn({ url: this.options.url, undelivered: this.queue.length, firstSeq: this.queue[0]!.seq }, 'audit webhook stopped with entries not delivered (the audit log keeps them)');
    }
  }

  private async sendLoop(): Promise<void> {
    const maxAttempts = this.options.maxAttempts ?? 5;
    while (!this.stopped && this.queue.length > 0) {
      const entry = this.queue[0]!;
      let attempt = 1;
      for (;;) {
        const error = await this.post(entry);
        if (error === undefined) {
          this.delivered += 1;
          this.options.metrics?.webhookDeliveries.inc({ result: 'delivered' });
          break;
        }
        this.lastError = error;
        if (this.stopped) return;
        if (attempt >= maxAttempts) {
          this.dropped += 1;
          this.options.metrics?.webhookDeliveries.inc({ result: 'failed' });
          this.options.metrics?.webhookDropped.inc();
          this.options.logger.error({ url: this.options.url, seq: entry.seq, attempts: attempt, error }, 'audit webhook delivery failed after every retry; entry dropped for the webhook (the audit log keeps it)');
          break;
        }
        this.options.metrics?.webhookDeliveries.inc({ result: 'retry' });
        const delay = Math.min((this.options.backoffMs ?? 500) * 2 ** (attempt - 1), this.options.maxBackoffMs ?? 30_000);
        this.options.logger.warn({ url: this.options.url, seq: entry.seq, attempt, retryInMs: delay, error }, 'audit webhook delivery failed; retrying');
        attempt += 1;
        try {
          await sleep(delay, undefined, { signal: this.abort.signal });
        } catch {
          return;
        }
      }
      this.queue.shift();
      if (this.fullSince !== undefined && this.queue.length < this.capacity) {
        this.options.logger.info({ url: this.options.url, fullForMs: Date.now() - this.fullSince, dropped: this.dropped }, 'audit webhook queue has room again');
        this.fullSince = undefined;
      }
    }
  }

  /** Sends one entry; returns undefined on a 2xx response, else a description of the failure. */
  private async post(entry: WebhookEntry): Promise<string | undefined> {
    try {
      const response = await fetch(this.options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(entry),
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.options.timeoutMs ?? 10_000)]),
      });
      await response.arrayBuffer().catch(() => undefined);
      return response.ok ? undefined : `HTTP ${response.status}`;
    } catch (error) {
      const cause = (error as { cause?: { code?: unknown } }).cause?.code;
      if (typeof cause === 'string') return cause;
      return error instanceof Error ? error.message : String(error);
    }
  }
}

/** Checks a webhook URL: http or https with a host, no credentials in it. Throws CONFIG_INVALID. */
export function parseWebhookUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CasError('CONFIG_INVALID', `invalid audit webhook URL "${text}": expected http://HOST[:PORT]/PATH or https://...`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new CasError('CONFIG_INVALID', `invalid audit webhook URL "${text}": expected an http or https URL`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new CasError('CONFIG_INVALID', 'invalid audit webhook URL: remove the user name and password from it, because the URL appears in logs and in cas status');
  }
  return url;
}

let processWebhook: AuditWebhook | undefined;

/** Sets the audit webhook of this `cas serve` process; every CAS server of the process forwards to it. */
export function setProcessAuditWebhook(webhook: AuditWebhook | undefined): void {
  processWebhook = webhook;
}

export function processAuditWebhook(): AuditWebhook | undefined {
  return processWebhook;
}
