import type { Logger } from '../logging/logger.js';
import type { CasMetrics } from '../metrics/cas-metrics.js';
import { CasError } from '../errors/cas-error.js';
import { AuditWebhook, DEFAULT_WEBHOOK_CAPACITY, setProcessAuditWebhook } from './audit-webhook.js';

/**
 * Starts the audit webhook of a `cas serve` process (`--audit-webhook URL`, `--audit-webhook-queue N`)
 * and makes it the one that every CAS server of this process forwards audit entries to.
 */
export function startProcessWebhook(options: { url: string | undefined; capacity: string | undefined; logger: Logger; metrics: CasMetrics | undefined }): { stop(): Promise<void> } {
  if (options.url === undefined) {
    if (options.capacity !== undefined) throw new CasError('INVALID_ARGUMENT', '--audit-webhook-queue needs --audit-webhook URL');
    return { stop: async () => undefined };
  }
  const capacity = options.capacity === undefined ? DEFAULT_WEBHOOK_CAPACITY : Number(options.capacity);
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1_000_000) {
    throw new CasError('CONFIG_INVALID', `invalid --audit-webhook-queue "${options.capacity}": expected a whole number of entries from 1 to 1000000`);
  }
  const logger = options.logger.child({ component: 'audit-webhook' });
  const webhook = new AuditWebhook({ url: options.url, capacity, logger, ...(options.metrics === undefined ? {} : { metrics: options.metrics }) });
  setProcessAuditWebhook(webhook);
  logger.info({ url: webhook.status().url, capacity }, 'forwarding audit entries to the webhook');
  return {
    async stop() {
      await webhook.close();
      setProcessAuditWebhook(undefined);
    },
  };
}
