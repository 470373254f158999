import type { ServerSettings } from '../config/settings.js';
import type { Logger } from '../logging/logger.js';
import { packageVersion } from '../server/cas-server.js';
import { CasMetrics } from './cas-metrics.js';
import { resolveMetricsListen, startMetricsServer } from './metrics-server.js';
import { setProcessMetrics } from './process-metrics.js';

/**
 * Starts the metrics of a `cas serve` process (`--metrics-listen`, `--no-metrics`): creates the registry,
 * makes it the process metrics that every CAS server of this process updates, and serves it. The
 * metrics server starts before the CAS server, so a standby is scraped too.
 */
export async function startProcessMetrics(options: {
  flag: string | undefined;
  enabled: boolean;
  settings: ServerSettings;
  logger: Logger;
}): Promise<{ metrics: CasMetrics | undefined; url: string | undefined; stop(): Promise<void> }> {
  const listen = resolveMetricsListen(options.flag, options.enabled, options.settings.listen);
  if (listen === undefined) {
    options.logger.info('metrics are disabled (--no-metrics)');
    return { metrics: undefined, url: undefined, stop: async () => undefined };
  }
  const metrics = new CasMetrics({ version: packageVersion(), mode: options.settings.mode });
  const server = await startMetricsServer({ metrics, listen, logger: options.logger.child({ component: 'metrics' }) });
  setProcessMetrics(metrics);
  return {
    metrics,
    url: server.url,
    async stop() {
      setProcessMetrics(undefined);
      await server.close();
    },
  };
}
