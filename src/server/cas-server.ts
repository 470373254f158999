import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fastify } from 'fastify';
import type { AuditLog } from '../audit/index.js';
import { HEALTH_PATHS } from '../config/defaults.js';
import type { CasError } from '../errors/cas-error.js';
import type { ServerSettings } from '../config/settings.js';
import { createLogger, type Logger } from '../logging/logger.js';
import { CasDatabase, openPlatform, type Platform } from '../store/index.js';
import { assertPlatformNotRemoved } from '../backup/removed-platforms.js';
import { startServerRecovery } from '../snapshots/server-hook.js';
import type { CasMetrics } from '../metrics/cas-metrics.js';
import { processMetrics } from '../metrics/process-metrics.js';
import { ServerObserver } from '../status/server-observer.js';
import { registerStatusRoute } from '../status/status-route.js';
import { registerSnapshotDownloadRoutes } from '../snapshots/download-routes.js';
import { packageVersion } from '../config/version.js';
import { certificateFingerprint } from '../tls/certificates.js';
import type { CasApp } from './app-types.js';
import { createCommit, openServerAudit, storeAuditHead } from './audit-setup.js';
import { GroupCommit } from './group-commit.js';
import { loadOrCreateCasIdentity } from './cas-identity.js';
import { ConfigurationService } from './configuration.js';
import { createHardwareEvidenceVerifier, type ReportDataBinding } from './evidence/hardware.js';
import { createErrorHandler } from './http-errors.js';
import { NonceRegistry, randomNonce, type NonceGenerator } from './nonces.js';
import { Provisioning } from './provisioning.js';
import { RequestLogController } from './request-log.js';
import { registerApiRoutes } from './routes.js';
import { SessionService } from './sessions.js';

/** Response header naming the mode, so every response of a simulated CAS carries `simulation`. */
export const MODE_HEADER = 'CAS-Mode';

export interface CasServerOptions {
  settings: ServerSettings;
  /** Defaults to `casLogger(settings)`. */
  logger?: Logger;
  /**
   * Test-only seam that produces configuration nonces. Only code that calls this factory can set it. The CLI
   * and the HTTP API cannot, so a deployed CAS always uses 32 random bytes.
   */
  nonceGenerator?: NonceGenerator;
  /**
   * Test-only seam that replaces `reportDataFor` in the check of hardware evidence. Recorded quotes carry
   * fixed report data, which no nonce and key can reproduce (the binding is a hash), so a test that
   * verifies a recorded quote end to end pins the nonce (nonceGenerator) and maps it to the recorded report
   * data here. Like nonceGenerator, only code that calls this factory can set it; `cas serve` and the HTTP
   * API cannot, so a deployed CAS always requires `reportDataFor(nonce, client key)`.
   */
  reportDataBinding?: ReportDataBinding;
  /**
   * Test-only clock for verifying hardware evidence (collateral validity windows and the collateral
   * cache), so recorded evidence verifies at the time its collateral was current. Not reachable from the
   * CLI or the HTTP API.
   */
  attestationClock?: () => Date;
  /** Called once when the CAS cannot go on (a snapshot failed); the caller closes the server and exits. */
  onFatal?: (error: CasError) => void;
  /** How long opening waits for another process's lock on cas.db, in milliseconds (see CasDatabase.open). */
  databaseBusyTimeoutMs?: number;
  /** False while this instance may not serve (high availability: it does not hold a valid primary lease). */
  isPrimary?: () => boolean;
  /** Prometheus metrics to update; defaults to the metrics of the `cas serve` process, if any. */
  metrics?: CasMetrics;
}

export interface CasServer {
  /** Starts listening; resolves with the bound address (the port is known even for port 0). */
  listen(): Promise<{ host: string; port: number; url: string }>;
  /**
   * Stops accepting requests, waits for those in flight, writes `cas.stopped` and closes audit log and
   * database. After `lease-lost` nothing is written, since another instance may be primary already.
   */
  close(reason?: 'signal' | 'shutdown' | 'fatal' | 'lease-lost'): Promise<void>;
  readonly app: CasApp;
}

/** Creates the server's logger: JSON on stdout, and every line carries `casMode`, so a simulated CAS is marked. */
export function casLogger(settings: ServerSettings): Logger {
  return createLogger({ level: settings.logLevel }).child({ casMode: settings.mode });
}

/**
 * Creates a CAS server: opens the platform key and the encrypted database, loads or creates the CAS
 * identity, opens the audit log and registers the routes. Nothing listens until `listen()`.
 */
export async function createCasServer(options: CasServerOptions): Promise<CasServer> {
  const { settings } = options;
  const logger = options.logger ?? casLogger(settings);
  const version = packageVersion();
  logger.info({ dataDir: settings.dataDir, platformDir: settings.platformDir, auditLog: settings.auditLog, listen: settings.listen, mode: settings.mode, version }, 'CAS starting');
  if (settings.mode === 'simulation') {
    logger.warn('CAS runs in simulation mode: its platform key is a file and its evidence proves nothing; use it for development and tests only');
  }

  const platform: Platform = await openPlatform({ mode: settings.mode, platformDir: settings.platformDir, logger });
  const db = CasDatabase.open({
    dataDir: settings.dataDir,
    platform,
    logger,
    platformDir: settings.platformDir,
    ...(options.databaseBusyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.databaseBusyTimeoutMs }),
  });
  let audit: AuditLog | undefined;
  const observer = new ServerObserver(options.metrics ?? processMetrics(), logger);
  try {
    assertPlatformNotRemoved(db);
    const casIdentity = await loadOrCreateCasIdentity(db, settings.listen.host, logger);
    const opened = await openServerAudit({ db, casIdentity, path: settings.auditLog, logger });
    audit = opened.audit;
    const auditLog = opened.audit;
    observer.watchAudit(auditLog);
    await storeAuditHead(db, await auditLog.append({ event: 'cas.started', actor: { kind: 'cas' }, outcome: 'success', details: { mode: settings.mode, version } }));

    const provisioning = new Provisioning(db, settings, logger);
    await provisioning.prepare();

    const commit = createCommit(db, auditLog);
    const groupCommit = new GroupCommit(db, auditLog, logger);
    const nonces = new NonceRegistry({ ttlMs: settings.nonceTtlSeconds * 1000, generate: options.nonceGenerator ?? randomNonce });
    const sessions = new SessionService(db, commit, groupCommit, logger);
    const hardware = await createHardwareEvidenceVerifier({
      settings,
      logger,
      ...(options.attestationClock === undefined ? {} : { now: options.attestationClock }),
      ...(options.reportDataBinding === undefined ? {} : { reportDataBinding: options.reportDataBinding }),
    });
    const configuration = new ConfigurationService(sessions, nonces, {
      append: async (entry) => {
        const head = await auditLog.append(entry);
        await storeAuditHead(db, head);
        return head;
      },
      hmac: (value) => auditLog.hmac(value),
    }, logger, hardware);

    const app = fastify({
      https: {
        key: casIdentity.privateKeyPem,
        cert: casIdentity.certificatePem,
        // Clients are identified by the key of their usually self-signed certificate. So the TLS layer
        // requests a certificate without validating its issuer, and routes that need one check it.
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      },
      bodyLimit: settings.bodyLimitBytes,
      // Session names are up to 256 characters and arrive percent-encoded (`/` is %2F); fastify's default
      // of 100 would make longer names unreachable once created.
      routerOptions: { maxParamLength: 1024 },
      loggerInstance: logger,
      logController: new RequestLogController({ requestIdLogLabel: 'requestId' }),
      genReqId: () => randomUUID(),
      return503OnClosing: true,
      // Malformed percent-encoding and overlong path parameters fail in the router, before the error handler
      // and the onSend hook that sets the mode header.
      frameworkErrors: (error, request, reply) => {
        reply.header(MODE_HEADER, settings.mode);
        createErrorHandler(settings.bodyLimitBytes)(error, request, reply);
      },
    });
    app.setErrorHandler(createErrorHandler(settings.bodyLimitBytes));
    observer.instrument(app);
    app.setNotFoundHandler((request, reply) => {
      void reply.status(404).send({ error: { code: 'NOT_FOUND', message: `no route for ${request.method} ${request.url.split('?')[0]}; see docs/api.md`, details: {} } });
    });
    app.addHook('onSend', async (_request, reply) => {
      reply.header(MODE_HEADER, settings.mode);
    });

    let closing = false;
    registerHealthRoutes(app, db, () => !closing && (options.isPrimary?.() ?? true));
    registerStatusRoute(app, {
      settings,
      version,
      db,
      platformId: platform.id,
      casCertificatePem: casIdentity.certificatePem,
      owner: () => provisioning.owner(),
      auditHead: () => auditLog.head(),
      serving: () => !closing && (options.isPrimary?.() ?? true),
      observer,
    });
    registerSnapshotDownloadRoutes(app, { snapshotDir: settings.snapshotDir, owner: () => provisioning.owner() });
    registerApiRoutes(app, {
      mode: settings.mode,
      version,
      db,
      platform,
      casCertificatePem: casIdentity.certificatePem,
      auditCertificatePem: opened.auditCertificatePem,
      auditHead: () => auditLog.head(),
      provisioning,
      commit,
      sessions,
      configuration,
      nonces,
    });
    await observer.loadNewestSnapshot(settings.snapshotDir);
    const recovery = await startServerRecovery({
      settings,
      db,
      casIdentity,
      audit: auditLog,
      logger,
      onFatal: (error) => {
        observer.snapshotFailed(error);
        options.onFatal?.(error);
      },
      onSnapshot: (result) => observer.snapshotSucceeded(result),
      onRestore: (marker) => observer.restored(marker),
    });
    observer.attach({
      role: () => (provisioning.owner() === undefined ? 'unprovisioned' : 'primary'),
      leaseHeld: () => !closing && (options.isPrimary?.() ?? true),
      sessionCount: () => (db.isOpen ? db.countSessions() : 0),
    });

    let closed: Promise<void> | undefined;
    return {
      app,
      async listen() {
        await app.listen({ host: settings.listen.host, port: settings.listen.port });
        const address = app.server.address() as AddressInfo;
        const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        const url = `https://${host}:${address.port}`;
        logger.info({ url, host: address.address, port: address.port, mode: settings.mode, certificateSha256: certificateFingerprint(casIdentity.certificatePem) }, 'CAS listening');
        return { host: address.address, port: address.port, url };
      },
      close(reason = 'shutdown') {
        closed ??= (async () => {
          closing = true;
          observer.detach();
          logger.info({ reason }, 'CAS stopping');
          await app.close();
          try {
            // Requests that staged a change have waited for it, but one whose client went away may not have.
            await groupCommit.drain();
            await recovery.stop();
            if (reason !== 'lease-lost') {
              await storeAuditHead(db, await auditLog.append({ event: 'cas.stopped', actor: { kind: 'cas' }, outcome: 'success', details: { reason } }));
            }
          } finally {
            await auditLog.close();
            db.close();
          }
          logger.info({ reason }, 'CAS stopped');
        })();
        return closed;
      },
    };
  } catch (error) {
    await audit?.close();
    db.close();
    throw error;
  }
}

/**
 * Health endpoints for Kubernetes probes; they need no client certificate. Startup: the database is open
 * and unsealed. Liveness: the event loop runs this handler and the database returns a query result. Readiness:
 * this instance serves requests as the primary and is not shutting down.
 */
function registerHealthRoutes(app: CasApp, db: CasDatabase, serving: () => boolean): void {
  app.get(HEALTH_PATHS.startup, async (_request, reply) => {
    if (!db.isOpen) return reply.status(503).send({ status: 'starting' });
    return { status: 'started' };
  });
  app.get(HEALTH_PATHS.liveness, async (request, reply) => {
    try {
      db.countSessions();
      return { status: 'alive' };
    } catch (error) {
      request.log.error({ err: error }, 'liveness check failed: the database query failed');
      return reply.status(503).send({ status: 'database not responding' });
    }
  });
  app.get(HEALTH_PATHS.readiness, async (_request, reply) => {
    // Without high availability (--lease none) a running, open instance counts as the primary.
    if (!serving() || !db.isOpen) return reply.status(503).send({ status: 'not ready' });
    return { status: 'ready' };
  });
}

export { packageVersion };
