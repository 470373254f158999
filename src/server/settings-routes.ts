import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import type { CasApp } from './app-types.js';
import { requireClientKey } from './client-identity.js';
import { invalidRequest } from './http-errors.js';
import { readOwnerSettings, replaceOwnerSettings, validateOwnerSettings } from './owner-settings.js';
import type { RouteContext } from './routes.js';

const schemas = {
  noQuery: z.strictObject({}),
  /** The settings document is validated by validateOwnerSettings, so its errors name the setting's path. */
  settingsBody: z.strictObject({ settings: z.record(z.string(), z.unknown()) }),
};

/** Checks that the CAS is provisioned and the caller is its owner; returns the owner's key hash. */
function requireOwner(context: RouteContext, callerKeyHash: string): string {
  const owner = context.provisioning.owner();
  if (owner === undefined) {
    throw new CasError('NOT_PROVISIONED', 'this CAS is not provisioned yet, so it has no owner who may read or change its settings');
  }
  if (callerKeyHash !== owner.keyHash) {
    throw new CasError('PERMISSION_DENIED', `only the CAS owner may read or change the CAS settings; client key ${callerKeyHash} is not the owner`);
  }
  return owner.keyHash;
}

/**
 * Registers the owner settings routes (docs/operations.md lists the settings). Only the CAS owner may call them.
 *
 * - `GET /v1/cas/settings` returns the effective settings.
 * - `PUT /v1/cas/settings` replaces them (keys left out return to their defaults) and returns the changed keys.
 */
export function registerSettingsRoutes(app: CasApp, context: RouteContext): void {
  app.get('/v1/cas/settings', async (request) => {
    const query = schemas.noQuery.safeParse(request.query ?? {});
    if (!query.success) throw invalidRequest('query', query.error);
    requireOwner(context, requireClientKey(request).keyHash);
    return { settings: readOwnerSettings(context.db) };
  });

  app.put('/v1/cas/settings', async (request) => {
    const query = schemas.noQuery.safeParse(request.query ?? {});
    if (!query.success) throw invalidRequest('query', query.error);
    const body = schemas.settingsBody.safeParse(request.body ?? {});
    if (!body.success) throw invalidRequest('body', body.error);
    const ownerKeyHash = requireOwner(context, requireClientKey(request).keyHash);
    const document = validateOwnerSettings(body.data.settings, 'the request body (settings)');
    const result = await replaceOwnerSettings(context.db, context.commit, document, ownerKeyHash);
    request.log.info({ changed: result.changed }, result.changed.length === 0 ? 'CAS settings unchanged' : 'CAS settings updated');
    return result;
  });
}
