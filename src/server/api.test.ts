import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CasClient } from '../client/cas-client.js';
import { FILE_NAMES, HEALTH_PATHS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { openPlatform } from '../store/index.js';
import { spkiOfCertificate } from '../tls/certificates.js';
import { createSimulatedEvidence } from './evidence/simulation.js';
import { clientFor, newIdentity, rawRequest, startTestCas, type TestCas, type TestIdentity } from './testing/in-process.js';

/** Runs `action` and returns the CasError it throws; fails if it succeeds or throws something else. */
async function rejection(action: () => Promise<unknown>): Promise<CasError> {
  try {
    await action();
  } catch (error) {
    assert.ok(error instanceof CasError, `expected a CasError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

const SIMULATED_SESSION = (name: string, extra = ''): string => `name: ${name}
version: "0.3"
services:
  - name: app
    command: /bin/app
    environment:
      PASSWORD: $$SCONE::password$$
secrets:
  - name: password
    kind: ascii
    size: 16
security:
  attestation:
    mode: none
${extra}`;

describe('CAS HTTP API', () => {
  let cas: TestCas;
  let owner: TestIdentity;
  let stranger: TestIdentity;
  let ownerClient: CasClient;
  let strangerClient: CasClient;
  const fixedNonce = Buffer.alloc(32, 0xab);
  let pinNonce = false;

  before(async () => {
    cas = await startTestCas({ bodyLimitBytes: 64 * 1024 }, { nonceGenerator: () => (pinNonce ? fixedNonce : Buffer.from(crypto.getRandomValues(new Uint8Array(32)))) });
    owner = await newIdentity();
    stranger = await newIdentity();
    ownerClient = clientFor(cas.url, owner);
    strangerClient = clientFor(cas.url, stranger);
  });

  after(async () => {
    await cas?.close();
  });

  /** Fetches a configuration with simulated evidence over a connection with a fresh ephemeral key. */
  async function fetchConfiguration(session: string, service: string, tamper?: (evidence: Record<string, unknown>) => void) {
    const ephemeral = await newIdentity();
    const client = ownerClient.withClientKey(ephemeral.privateKeyPem, ephemeral.certificatePem);
    const { nonce } = await client.requestNonce();
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(cas.dataDir, '..', 'service-platform') });
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, spkiOfCertificate(ephemeral.certificatePem)) as unknown as Record<string, unknown>;
    tamper?.(evidence);
    const request = { session, service, nonce, evidence, hostArguments: [], hostEnvironment: {} };
    return { client, request, send: () => client.fetchConfiguration(request) };
  }

  describe('health', () => {
    for (const [probe, path] of Object.entries(HEALTH_PATHS)) {
      it(`${probe} answers 200 without a client certificate`, async () => {
        const response = await rawRequest(cas.url, { method: 'GET', path });
        assert.equal(response.status, 200);
        assert.equal(response.headers['cas-mode'], 'simulation');
      });
    }
  });

  describe('before provisioning', () => {
    it('rejects session calls with NOT_PROVISIONED', async () => {
      const error = await rejection(() => ownerClient.listSessions());
      assert.equal(error.code, 'NOT_PROVISIONED');
    });

    it('rejects a wrong token', async () => {
      const error = await rejection(() => ownerClient.provision('wrong-token-of-sufficient-length'));
      assert.equal(error.code, 'PROVISIONING_TOKEN_INVALID');
    });

    it('rejects provisioning without a client certificate', async () => {
      const response = await rawRequest(cas.url, { method: 'POST', path: '/v1/provision', body: JSON.stringify({ token: 'x' }) });
      assert.equal(response.status, 401);
      assert.equal((response.body as { error: { code: string } }).error.code, 'CLIENT_CERT_MISSING');
    });

    it('provisions the owner once', async () => {
      const token = readFileSync(join(cas.dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
      const result = await ownerClient.provision(token);
      assert.equal(result.owner, owner.keyHash);
      const again = await rejection(() => strangerClient.provision(token));
      assert.equal(again.code, 'ALREADY_PROVISIONED');
      assert.equal(again.details?.['status'], 409);
    });
  });

  describe('sessions', () => {
    it('reports the status as simulated', async () => {
      const status = await strangerClient.status();
      assert.equal(status.mode, 'simulation');
      assert.equal(status.provisioned, true);
    });

    it('encodes names with a slash as one path segment', async () => {
      await ownerClient.createSession('name: ns\nversion: "0.3"\naccess_policy:\n  create_sessions: [CREATOR]\n');
      const created = await ownerClient.createSession(SIMULATED_SESSION('ns/child'));
      assert.equal(created.name, 'ns/child');
      const read = await ownerClient.readSession('ns/child');
      assert.equal(read.hash, created.hash);
      const raw = await rawRequest(cas.url, { method: 'GET', path: '/v1/sessions/ns%2Fchild', identity: owner });
      assert.equal(raw.status, 200);
    });

    it('requires create_sessions on the parent namespace', async () => {
      const error = await rejection(() => strangerClient.createSession(SIMULATED_SESSION('ns/intruder')));
      assert.equal(error.code, 'PERMISSION_DENIED');
      assert.match(error.message, /namespace "ns"/);
      const missing = await rejection(() => ownerClient.createSession(SIMULATED_SESSION('nowhere/child')));
      assert.equal(missing.code, 'SESSION_NOT_FOUND');
    });

    it('rejects an update without a predecessor', async () => {
      const error = await rejection(() => ownerClient.updateSession('ns/child', SIMULATED_SESSION('ns/child')));
      assert.equal(error.code, 'SESSION_CONFLICT');
      assert.equal(error.details?.['status'], 409);
    });

    it('rejects an update by another identity', async () => {
      const current = await ownerClient.readSession('ns/child');
      const error = await rejection(() => strangerClient.updateSession('ns/child', `predecessor: ${current.hash}\n` + SIMULATED_SESSION('ns/child')));
      assert.equal(error.code, 'PERMISSION_DENIED');
    });

    it('lets only the owner read the audit head', async () => {
      const head = await ownerClient.auditHead();
      assert.ok(head.seq > 0);
      assert.match(head.hash, /^[0-9a-f]{64}$/);
      const error = await rejection(() => strangerClient.auditHead());
      assert.equal(error.code, 'PERMISSION_DENIED');
    });
  });

  describe('bad input', () => {
    /** Asserts the rejection, that nothing was written and that the server still responds. */
    async function expectRejected(action: () => Promise<unknown>, code: string, message: RegExp): Promise<void> {
      const before = await ownerClient.listSessions();
      const error = await rejection(action);
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
      const status = error.details?.['status'] as number;
      assert.ok(status >= 400, `status ${status}`);
      assert.ok(status < 500, `status ${status}`);
      assert.deepEqual(await ownerClient.listSessions(), before);
      assert.equal((await rawRequest(cas.url, { method: 'GET', path: HEALTH_PATHS.liveness })).status, 200);
    }

    it('malformed YAML names line and column', async () => {
      await expectRejected(() => ownerClient.createSession('name: x\nversion: "0.3"\nsecrets:\n  - name: a\n    kind: ascii\n     size: 3\n'), 'SESSION_INVALID', /line \d+, column \d+/);
    });

    it('unknown key names the key', async () => {
      await expectRejected(() => ownerClient.createSession(SIMULATED_SESSION('bad-key', 'colour: blue\n')), 'SESSION_INVALID', /colour/);
    });

    it('unknown secret reference names the secret', async () => {
      await expectRejected(() => ownerClient.createSession(SIMULATED_SESSION('bad-ref').replace('$$SCONE::password$$', () => '$$SCONE::missing$$')), 'SECRET_REFERENCE_INVALID', /missing/);
    });

    it('oversize body gets 413', async () => {
      const response = await rawRequest(cas.url, { method: 'POST', path: '/v1/sessions', identity: owner, body: JSON.stringify({ session: 'x'.repeat(70 * 1024) }) });
      assert.equal(response.status, 413);
      const body = response.body as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'BODY_TOO_LARGE');
      assert.match(body.error.message, /65536 bytes/);
    });

    it('body that is not JSON gets 400', async () => {
      const response = await rawRequest(cas.url, { method: 'POST', path: '/v1/sessions', identity: owner, body: '{"session": ' });
      assert.equal(response.status, 400);
      assert.equal((response.body as { error: { code: string } }).error.code, 'INVALID_ARGUMENT');
    });

    it('unknown body field is named', async () => {
      const response = await rawRequest(cas.url, { method: 'POST', path: '/v1/sessions', identity: owner, body: JSON.stringify({ session: 'name: a', extra: 1 }) });
      assert.equal(response.status, 400);
      assert.match((response.body as { error: { message: string } }).error.message, /extra/);
    });

    it('invalid session name in the path is named', async () => {
      const response = await rawRequest(cas.url, { method: 'GET', path: '/v1/sessions/%20bad', identity: owner });
      assert.equal(response.status, 400);
      assert.match((response.body as { error: { message: string } }).error.message, /params\.name/);
    });

    it('missing client certificate gets 401', async () => {
      const response = await rawRequest(cas.url, { method: 'GET', path: '/v1/sessions' });
      assert.equal(response.status, 401);
      assert.equal((response.body as { error: { code: string } }).error.code, 'CLIENT_CERT_MISSING');
    });

    it('stale predecessor gets 409', async () => {
      const current = await ownerClient.readSession('ns/child');
      const stale = 'f'.repeat(64);
      await expectRejected(() => ownerClient.updateSession('ns/child', `predecessor: ${stale}\n` + SIMULATED_SESSION('ns/child')), 'SESSION_CONFLICT', new RegExp(current.hash));
    });

    it('cyclic import names the cycle', async () => {
      await ownerClient.createSession('name: cycle-b\nversion: "0.3"\nsecrets:\n  - name: t\n    kind: ascii\n    export:\n      - session: cycle-a\n');
      await ownerClient.createSession('name: cycle-a\nversion: "0.3"\nsecrets:\n  - name: s\n    import:\n      session: cycle-b\n      secret: t\n    export:\n      - session: cycle-b\n');
      const b = await ownerClient.readSession('cycle-b');
      const cyclic = `name: cycle-b\nversion: "0.3"\npredecessor: ${b.hash}\nsecrets:\n  - name: t\n    import:\n      session: cycle-a\n      secret: s\n    export:\n      - session: cycle-a\n`;
      await expectRejected(() => ownerClient.updateSession('cycle-b', cyclic), 'SECRET_REFERENCE_INVALID', /cyclic import/);
    });
  });

  describe('configuration', () => {
    before(async () => {
      await ownerClient.createSession(SIMULATED_SESSION('sim-app'));
      await ownerClient.createSession(SIMULATED_SESSION('hw-app').replace('mode: none', 'mode: hardware').replace('    command: /bin/app', '    mrenclaves: ["' + 'a'.repeat(64) + '"]\n    command: /bin/app'));
    });

    it('releases the configuration for bound simulated evidence', async () => {
      const { send } = await fetchConfiguration('sim-app', 'app');
      const configuration = await send();
      assert.match(configuration.environment['PASSWORD']!, /^[A-Za-z0-9]{16}$/);
    });

    it('rejects a replayed nonce', async () => {
      const { send } = await fetchConfiguration('sim-app', 'app');
      await send();
      const error = await rejection(send);
      assert.equal(error.code, 'EVIDENCE_REPLAYED');
    });

    it('rejects evidence bound to another key', async () => {
      const { client, request } = await fetchConfiguration('sim-app', 'app');
      const other = await newIdentity();
      const platform = await openPlatform({ mode: 'simulation', platformDir: join(cas.dataDir, '..', 'service-platform') });
      request.evidence = createSimulatedEvidence(platform, 'service-key', request.nonce, spkiOfCertificate(other.certificatePem)) as unknown as Record<string, unknown>;
      const error = await rejection(() => client.fetchConfiguration(request));
      assert.equal(error.code, 'EVIDENCE_INVALID');
      assert.match(error.message, /TLS client key/);
    });

    it('rejects a nonce used on another connection key', async () => {
      const { request } = await fetchConfiguration('sim-app', 'app');
      const error = await rejection(() => ownerClient.fetchConfiguration(request));
      assert.equal(error.code, 'NONCE_INVALID');
    });

    it('rejects a forged signature', async () => {
      const { send } = await fetchConfiguration('sim-app', 'app', (evidence) => {
        const signature = Buffer.from(evidence['signature'] as string, 'base64');
        signature[5] = signature[5]! ^ 0x01;
        evidence['signature'] = signature.toString('base64');
      });
      const error = await rejection(send);
      assert.equal(error.code, 'EVIDENCE_INVALID');
    });

    it('rejects simulated evidence for a hardware session', async () => {
      const { send } = await fetchConfiguration('hw-app', 'app');
      const error = await rejection(send);
      assert.equal(error.code, 'SIMULATION_NOT_ALLOWED');
      assert.equal(error.details?.['status'], 403);
      assert.match(error.message, /mode is "hardware"/);
    });

    it('rejects an unknown service', async () => {
      const { send } = await fetchConfiguration('sim-app', 'nope');
      const error = await rejection(send);
      assert.equal(error.code, 'SERVICE_NOT_FOUND');
    });

    it('issues the nonce of the test generator', async () => {
      pinNonce = true;
      try {
        const { nonce } = await ownerClient.requestNonce();
        assert.equal(nonce, fixedNonce.toString('hex'));
      } finally {
        pinNonce = false;
      }
    });
  });
});
