import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { parseListenAddress, type ListenAddress } from '../config/settings.js';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasMetrics } from './cas-metrics.js';

/** Path of the Prometheus scrape endpoint on the metrics port. */
export const METRICS_PATH = '/metrics';

export interface MetricsServer {
  /** `http://HOST:PORT/metrics`, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Resolves where the metrics listen: `--metrics-listen HOST:PORT`, else the API host on
 * DEFAULTS.metricsPort. When the API listens on port 0 (tests), the metrics do too, so that parallel
 * servers never compete for the fixed port. Returns undefined for `--no-metrics`.
 */
export function resolveMetricsListen(flag: string | undefined, enabled: boolean, api: ListenAddress): ListenAddress | undefined {
  if (!enabled) {
    if (flag !== undefined) throw new CasError('INVALID_ARGUMENT', 'give either --metrics-listen or --no-metrics, not both');
    return undefined;
  }
  if (flag === undefined) return { host: api.host, port: api.port === 0 ? 0 : DEFAULTS.metricsPort };
  const parsed = parseListenAddress(flag);
  if (parsed === undefined) {
    throw new CasError('CONFIG_INVALID', `invalid --metrics-listen "${flag}": expected HOST:PORT with a port from 0 to 65535`);
  }
  if (parsed.port !== 0 && parsed.port === api.port) {
    throw new CasError('CONFIG_INVALID', `--metrics-listen uses port ${parsed.port}, which the API (--listen) uses already; metrics need their own port`);
  }
  return parsed;
}

/**
 * Serves `GET /metrics` over plain HTTP on its own port. The endpoint carries no secret and no session
 * name, only counts, durations and the CAS version and mode; restrict who can reach the port with a
 * network policy or the listen address. Every other path returns 404.
 */
export async function startMetricsServer(options: { metrics: CasMetrics; listen: ListenAddress; logger: Logger }): Promise<MetricsServer> {
  const { metrics, logger } = options;
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path !== METRICS_PATH || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found; metrics are at ${METRICS_PATH}\n`);
      return;
    }
    metrics.scrape().then(
      ({ contentType, body }) => {
        response.writeHead(200, { 'content-type': contentType });
        response.end(request.method === 'HEAD' ? undefined : body);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('collecting metrics failed\n');
      },
    );
  });
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const where = `${options.listen.host}:${options.listen.port}`;
      reject(new CasError('CONFIG_INVALID', `the metrics server cannot listen on ${where} (${error.code ?? error.message}); choose another --metrics-listen or pass --no-metrics`, { cause: error }));
    });
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}${METRICS_PATH}`;
  logger.info({ url, port: address.port }, 'metrics listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
