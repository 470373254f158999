import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fastify } from 'fastify';
import { HEALTH_PATHS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import type { CasApp } from '../server/app-types.js';
import { createErrorHandler } from '../server/http-errors.js';
import { addLeaseFencing } from './fencing.js';

/** A fastify app with fencing whose lease validity the test switches; plain HTTP, since TLS is not under test. */
function fencedApp(): { app: CasApp; lease: { valid: boolean }; handled: string[] } {
  const lease = { valid: true };
  const handled: string[] = [];
  const app = fastify() as unknown as CasApp;
  app.setErrorHandler(createErrorHandler(1024));
  addLeaseFencing(app, {
    check: () => (lease.valid ? undefined : new CasError('NOT_PRIMARY', 'lease lapsed; the primary is node-b')),
    bodyLimitBytes: 1024,
  });
  app.post('/v1/sessions', async (_request, reply) => {
    handled.push('create');
    return reply.status(201).send({ created: true });
  });
  app.post('/v1/slow-write', async (_request, reply) => {
    handled.push('slow');
    // The process "pauses" while the write runs: the lease lapses before the response goes out.
    lease.valid = false;
    return reply.status(201).send({ created: true });
  });
  app.get(HEALTH_PATHS.liveness, async () => ({ status: 'alive' }));
  app.post('/v1/attestation', async () => ({ evidence: 'x' }));
  return { app, lease, handled };
}

describe('addLeaseFencing', () => {
  it('passes requests while the lease is valid', async () => {
    const { app, handled } = fencedApp();
    const response = await app.inject({ method: 'POST', url: '/v1/sessions', payload: {} });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(handled, ['create']);
  });

  it('rejects a request before its handler runs', async () => {
    const { app, lease, handled } = fencedApp();
    lease.valid = false;
    const response = await app.inject({ method: 'POST', url: '/v1/sessions', payload: {} });
    assert.equal(response.statusCode, 503);
    assert.equal(response.json().error.code, 'NOT_PRIMARY');
    assert.match(response.json().error.message, /node-b/);
    assert.deepEqual(handled, []);
  });

  it('withholds the acknowledgement when the lease lapses mid-request', async () => {
    const { app, handled } = fencedApp();
    const response = await app.inject({ method: 'POST', url: '/v1/slow-write', payload: {} });
    assert.deepEqual(handled, ['slow']);
    assert.equal(response.statusCode, 503);
    assert.equal(response.json().error.code, 'NOT_PRIMARY');
    assert.equal(response.json().created, undefined);
  });

  it('serves health and attestation without a lease', async () => {
    const { app, lease } = fencedApp();
    lease.valid = false;
    assert.equal((await app.inject({ method: 'GET', url: HEALTH_PATHS.liveness })).statusCode, 200);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/attestation?x=1', payload: {} })).statusCode, 200);
  });

  it('fences unknown paths too', async () => {
    const { app, lease } = fencedApp();
    lease.valid = false;
    assert.equal((await app.inject({ method: 'GET', url: '/v1/unknown' })).statusCode, 503);
  });
});
