import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import type { CasDatabase, Platform } from '../store/index.js';
import { certificateDer } from '../tls/certificates.js';
import type { CasApp } from './app-types.js';
import { registerBackupRoutes } from './backup-routes.js';
import { registerSettingsRoutes } from './settings-routes.js';
import { requireClientKey, type ClientKey } from './client-identity.js';
import type { ConfigurationService } from './configuration.js';
import { collectCasEvidence } from './evidence/cas-evidence.js';
import { createSimulatedEvidence } from './evidence/simulation.js';
import { invalidRequest } from './http-errors.js';
import type { NonceRegistry } from './nonces.js';
import type { Provisioning, CommitChange } from './provisioning.js';
import { requestLogger } from './request-log.js';
import type { SessionService } from './sessions.js';

/** Dependencies of the routes on the running server. */
export interface RouteContext {
  mode: 'simulation' | 'hardware';
  version: string;
  db: CasDatabase;
  platform: Platform;
  casCertificatePem: string;
  auditCertificatePem: string;
  auditHead: () => { seq: number; hash: string };
  provisioning: Provisioning;
  commit: CommitChange;
  sessions: SessionService;
  configuration: ConfigurationService;
  nonces: NonceRegistry;
}

const HEX_NONCE = z.string().regex(/^[0-9a-f]{32,128}$/, 'expected 32 to 128 lower-case hex characters');
/** Session and service names: letters, digits and `_.:/-`, starting with a letter, digit or `_` (as the session language allows). */
const NAME = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,255}$/, 'expected 1 to 256 characters of letters, digits and _.:/- starting with a letter, digit or _');
const SESSION_TEXT = z.string().min(1, 'the session document is empty');

const schemas = {
  provision: z.strictObject({ token: z.string().min(1).max(1024) }),
  attestation: z.strictObject({ nonce: HEX_NONCE }),
  sessionBody: z.strictObject({ session: SESSION_TEXT }),
  sessionParams: z.strictObject({ name: NAME }),
  noQuery: z.strictObject({}),
  nonceBody: z.strictObject({}),
  configuration: z.strictObject({
    session: NAME,
    service: NAME,
    nonce: HEX_NONCE,
    evidence: z.record(z.string(), z.unknown()),
    hostArguments: z.array(z.string().max(65_536)).max(1024).default([]),
    hostEnvironment: z.record(z.string().max(1024), z.string().max(65_536)).default({}),
  }),
};

function parse<T extends z.ZodType>(schema: T, value: unknown, part: 'body' | 'params' | 'query'): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw invalidRequest(part, result.error);
  return result.data;
}

/** Parses the session name from the path and binds it to the request's own logger, so its later lines carry it. */
function sessionName(request: FastifyRequest): string {
  const { name } = parse(schemas.sessionParams, request.params, 'params');
  requestLogger(request).setBindings({ session: name });
  return name;
}

function requireProvisioned(context: RouteContext): void {
  if (context.provisioning.owner() === undefined) {
    throw new CasError('NOT_PROVISIONED', 'this CAS is not provisioned yet; run cas provision --cas URL --token TOKEN first');
  }
}

function client(request: FastifyRequest): ClientKey {
  return requireClientKey(request);
}

/**
 * Registers the `/v1` API. Every route validates its params, query and body; see docs/api.md.
 * `GET /v1/status` is registered by src/status/status-route.ts.
 */
export function registerApiRoutes(app: CasApp, context: RouteContext): void {
  app.get('/v1/certificates', async (request) => {
    parse(schemas.noQuery, request.query, 'query');
    return { casCertificate: context.casCertificatePem, auditChain: [context.auditCertificatePem, context.casCertificatePem] };
  });

  app.post('/v1/provision', async (request) => {
    const body = parse(schemas.provision, request.body, 'body');
    const owner = await context.provisioning.provision(body.token, client(request), context.commit);
    return { owner: owner.keyHash, provisionedAt: owner.provisionedAt };
  });

  app.post('/v1/attestation', async (request) => {
    const body = parse(schemas.attestation, request.body, 'body');
    const certificate = certificateDer(context.casCertificatePem);
    const evidence =
      context.mode === 'hardware' ? await collectCasEvidence(body.nonce, certificate) : createSimulatedEvidence(context.platform, 'cas-certificate', body.nonce, certificate);
    return { mode: context.mode, evidence, certificatePem: context.casCertificatePem };
  });

  app.post('/v1/sessions', async (request, reply) => {
    parse(schemas.noQuery, request.query, 'query');
    const body = parse(schemas.sessionBody, request.body, 'body');
    requireProvisioned(context);
    const created = await context.sessions.create(body.session, client(request), request.log);
    return reply.status(201).send(created);
  });

  app.get('/v1/sessions', async (request) => {
    parse(schemas.noQuery, request.query, 'query');
    requireProvisioned(context);
    return { sessions: context.sessions.list(client(request)) };
  });

  app.get('/v1/sessions/:name', async (request) => {
    const name = sessionName(request);
    parse(schemas.noQuery, request.query, 'query');
    requireProvisioned(context);
    return context.sessions.readAudited(name, client(request), request.log);
  });

  app.put('/v1/sessions/:name', async (request) => {
    const name = sessionName(request);
    parse(schemas.noQuery, request.query, 'query');
    const body = parse(schemas.sessionBody, request.body, 'body');
    requireProvisioned(context);
    return context.sessions.update(name, body.session, client(request), request.log);
  });

  app.delete('/v1/sessions/:name', async (request) => {
    const name = sessionName(request);
    parse(schemas.noQuery, request.query, 'query');
    requireProvisioned(context);
    await context.sessions.delete(name, client(request), request.log);
    return { name, deleted: true };
  });

  app.post('/v1/nonces', async (request) => {
    parse(schemas.nonceBody, request.body, 'body');
    requireProvisioned(context);
    const issued = context.nonces.issue(client(request).keyHash);
    return { nonce: issued.nonce, expiresAt: issued.expiresAt.toISOString() };
  });

  app.post('/v1/configuration', async (request) => {
    const body = parse(schemas.configuration, request.body, 'body');
    requireProvisioned(context);
    requestLogger(request).setBindings({ session: body.session, service: body.service });
    return context.configuration.release(body, client(request), request.log);
  });

  app.get('/v1/audit/head', async (request) => {
    parse(schemas.noQuery, request.query, 'query');
    const owner = context.provisioning.owner();
    if (owner === undefined) throw new CasError('NOT_PROVISIONED', 'this CAS is not provisioned yet, so it has no owner who may read the audit head');
    const caller = client(request);
    if (caller.keyHash !== owner.keyHash) {
      throw new CasError('PERMISSION_DENIED', `only the CAS owner may read the audit head; client key ${caller.keyHash} is not the owner`);
    }
    return context.auditHead();
  });

  registerBackupRoutes(app, context);
  registerSettingsRoutes(app, context);
}
