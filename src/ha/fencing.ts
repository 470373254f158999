import { HEALTH_PATHS } from '../config/defaults.js';
import type { CasError } from '../errors/cas-error.js';
import type { CasApp } from '../server/app-types.js';
import { toErrorResponse } from '../server/http-errors.js';

/**
 * Paths that a fenced primary still serves: health probes (readiness reports the lease itself) and its own
 * attestation, which reveals nothing from the database and changes nothing.
 */
const UNFENCED_PATHS = new Set<string>([HEALTH_PATHS.startup, HEALTH_PATHS.liveness, HEALTH_PATHS.readiness, '/v1/attestation']);

/**
 * Adds the lease check to every API request of a primary: once when the request arrives, and again in
 * `onSend`, right before the response (the acknowledgement) leaves. A primary that was paused past its
 * lease and resumes with requests in flight therefore sends 503 NOT_PRIMARY instead of acknowledging them.
 * A change may already be committed when the second check fails. The client then sees an error for a write
 * that may persist, as with any write whose response is lost, and never an acknowledgement from a primary
 * whose lease had lapsed. Reads are fenced too, so a deposed primary never releases configuration that the
 * new primary may have changed.
 */
export function addLeaseFencing(app: CasApp, fence: { check: () => CasError | undefined; bodyLimitBytes: number }): void {
  app.addHook('onRequest', async (request, reply) => {
    if (isUnfenced(request.url)) return;
    const error = fence.check();
    if (error === undefined) return;
    const response = toErrorResponse(error, fence.bodyLimitBytes);
    request.log.warn({ code: error.code, method: request.method, url: request.url }, 'request rejected: this instance does not hold a valid primary lease');
    return reply.status(response.status).send(response.body);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    if (isUnfenced(request.url)) return payload;
    const error = fence.check();
    if (error === undefined) return payload;
    const response = toErrorResponse(error, fence.bodyLimitBytes);
    request.log.warn(
      { code: error.code, method: request.method, url: request.url, replacedStatus: reply.statusCode },
      'response withheld: the primary lease lapsed while the request ran',
    );
    void reply.status(response.status);
    reply.header('content-type', 'application/json; charset=utf-8');
    return JSON.stringify(response.body);
  });
}

function isUnfenced(url: string): boolean {
  return UNFENCED_PATHS.has(url.split('?')[0] ?? url);
}
