import { z } from 'zod';
import { BackupService } from '../backup/backup-service.js';
import { registrationEvidenceSchema } from '../backup/registration-evidence.js';
import type { CasApp } from './app-types.js';
import { requireClientKey } from './client-identity.js';
import { invalidRequest } from './http-errors.js';
import type { RouteContext } from './routes.js';

const PLATFORM_ID = z.string().regex(/^[0-9a-f]{32}$/, 'expected a platform id of 32 lower-case hex characters');
const KEY_HASH = z.string().regex(/^[0-9a-f]{64}$/, 'expected a client key hash of 64 lower-case hex characters');

const schemas = {
  register: z.strictObject({ nonce: z.string().regex(/^[0-9a-f]{32,128}$/, 'expected 32 to 128 lower-case hex characters'), evidence: registrationEvidenceSchema }),
  platformParams: z.strictObject({ platformId: PLATFORM_ID }),
  registrar: z.strictObject({ keyHash: KEY_HASH }),
  registrarParams: z.strictObject({ keyHash: KEY_HASH }),
  noQuery: z.strictObject({}),
};

function parse<T extends z.ZodType>(schema: T, value: unknown, part: 'body' | 'params' | 'query'): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw invalidRequest(part, result.error);
  return result.data;
}

/**
 * Registers the backup-target routes, documented in docs/backup.md. Only the CAS owner may call them,
 * except that an authorised registrar key may also register a platform.
 *
 * - `POST /v1/backup/platforms` registers a platform.
 * - `GET /v1/backup/platforms` lists the key store entries, removals and registrars.
 * - `DELETE /v1/backup/platforms/:platformId` removes a platform.
 * - `POST /v1/backup/registrars` and `DELETE /v1/backup/registrars/:keyHash` authorise and revoke a registrar key.
 */
export function registerBackupRoutes(app: CasApp, context: RouteContext): void {
  const service = new BackupService({
    db: context.db,
    commit: context.commit,
    ownerKeyHash: () => context.provisioning.owner()?.keyHash,
    mode: context.mode,
    casCertificatePem: context.casCertificatePem,
    nonces: context.nonces,
    logger: app.log,
  });

  app.post('/v1/backup/platforms', async (request, reply) => {
    parse(schemas.noQuery, request.query, 'query');
    const body = parse(schemas.register, request.body, 'body');
    const result = await service.register(body, requireClientKey(request).keyHash);
    return reply.status(result.added ? 201 : 200).send(result);
  });

  app.get('/v1/backup/platforms', async (request) => {
    parse(schemas.noQuery, request.query, 'query');
    return service.list(requireClientKey(request).keyHash);
  });

  app.delete('/v1/backup/platforms/:platformId', async (request) => {
    const { platformId } = parse(schemas.platformParams, request.params, 'params');
    parse(schemas.noQuery, request.query, 'query');
    const removal = await service.remove(platformId, requireClientKey(request).keyHash);
    return { ...removal, removed: true };
  });

  app.post('/v1/backup/registrars', async (request, reply) => {
    parse(schemas.noQuery, request.query, 'query');
    const body = parse(schemas.registrar, request.body, 'body');
    const result = await service.authorizeRegistrar(body.keyHash, requireClientKey(request).keyHash);
    return reply.status(result.added ? 201 : 200).send(result);
  });

  app.delete('/v1/backup/registrars/:keyHash', async (request) => {
    const { keyHash } = parse(schemas.registrarParams, request.params, 'params');
    parse(schemas.noQuery, request.query, 'query');
    await service.revokeRegistrar(keyHash, requireClientKey(request).keyHash);
    return { keyHash, revoked: true };
  });
}
