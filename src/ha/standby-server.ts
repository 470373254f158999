import type { AddressInfo } from 'node:net';
import { fastify, LogController } from 'fastify';
import { z } from 'zod';
import { HEALTH_PATHS } from '../config/defaults.js';
import type { ServerSettings } from '../config/settings.js';
import type { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { createSimulatedEvidence } from '../server/evidence/simulation.js';
import { MODE_HEADER } from '../server/cas-server.js';
import { createErrorHandler, invalidRequest } from '../server/http-errors.js';
import type { Platform } from '../store/index.js';
import { certificateDer, certificateFingerprint, createSelfSignedCertificate } from '../tls/certificates.js';

const attestationBody = z.strictObject({ nonce: z.string().regex(/^[0-9a-f]{32,128}$/, 'expected 32 to 128 lower-case hex characters') });

export interface StandbyServerOptions {
  settings: ServerSettings;
  /** Port to bind; the primary binds the same one later, so a Service or client keeps its address. */
  port: number;
  platform: Platform;
  instanceId: string;
  logger: Logger;
  /** The error a client gets for every API request: NOT_PRIMARY naming the current primary. */
  notPrimary: () => CasError;
  /** What this instance is doing, for /v1/status: waiting for the lease or for the database lock. */
  phase: () => 'standby' | 'opening-database';
}

export interface StandbyServer {
  readonly url: string;
  readonly port: number;
  /** SHA-256 of the standby's own certificate; it differs from the primary's, which lives in the database. */
  readonly certificateSha256: string;
  close(): Promise<void>;
}

/**
 * Starts the HTTPS server of a standby: an instance that does not hold the primary lease and therefore
 * must not open the database. Its TLS key is generated in memory, because the CAS identity is stored in
 * the database. It returns health results (started and alive, never ready), its status, and evidence about
 * itself bound to its own certificate. Every other request gets 503 NOT_PRIMARY naming the primary.
 */
export async function startStandbyServer(options: StandbyServerOptions): Promise<StandbyServer> {
  const { settings, logger } = options;
  const identity = await createSelfSignedCertificate({
    commonName: 'cas standby',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    usage: 'server',
    validDays: 30,
  });
  const certificateSha256 = certificateFingerprint(identity.certificatePem);

  const app = fastify({
    https: { key: identity.privateKeyPem, cert: identity.certificatePem, minVersion: 'TLSv1.2' },
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  app.setErrorHandler(createErrorHandler(settings.bodyLimitBytes));
  app.addHook('onSend', async (_request, reply) => {
    reply.header(MODE_HEADER, settings.mode);
  });

  app.get(HEALTH_PATHS.startup, async () => ({ status: 'standby' }));
  app.get(HEALTH_PATHS.liveness, async () => ({ status: 'alive' }));
  app.get(HEALTH_PATHS.readiness, async (_request, reply) => reply.status(503).send({ status: 'standby' }));

  app.get('/v1/status', async () => {
    const error = options.notPrimary();
    return {
      role: options.phase(),
      instance: options.instanceId,
      mode: settings.mode,
      simulated: settings.mode === 'simulation',
      platformId: options.platform.id,
      primary: error.details?.['primary'] ?? null,
      certificateSha256,
    };
  });

  app.post('/v1/attestation', async (request) => {
    const parsed = attestationBody.safeParse(request.body ?? {});
    if (!parsed.success) throw invalidRequest('body', parsed.error);
    const evidence = createSimulatedEvidence(options.platform, 'cas-certificate', parsed.data.nonce, certificateDer(identity.certificatePem));
    return { mode: settings.mode, role: 'standby', evidence, certificatePem: identity.certificatePem };
  });

  app.setNotFoundHandler(async () => {
    throw options.notPrimary();
  });

  await app.listen({ host: settings.listen.host, port: options.port });
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `https://${host}:${address.port}`;
  logger.info({ url, port: address.port, instance: options.instanceId, platformId: options.platform.id, certificateSha256 }, 'CAS standby listening');
  return { url, port: address.port, certificateSha256, close: () => app.close() };
}
