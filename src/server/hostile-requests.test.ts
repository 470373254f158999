import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CasClient } from '../client/cas-client.js';
import { FILE_NAMES, HEALTH_PATHS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { MAX_GENERATED_SECRET_BYTES, MAX_SECRETS } from '../policy/parse-session.js';
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

const session = (name: string, extra = ''): string => `name: ${name}\nversion: "0.3"\nsecurity:\n  attestation:\n    mode: none\n${extra}`;

/** Requests that an attacker with any client certificate can send once the CAS is provisioned. */
describe('hostile requests', () => {
  let cas: TestCas;
  let owner: TestIdentity;
  let ownerClient: CasClient;
  let strangerClient: CasClient;

  before(async () => {
    cas = await startTestCas();
    owner = await newIdentity();
    ownerClient = clientFor(cas.url, owner);
    strangerClient = clientFor(cas.url, await newIdentity());
    await ownerClient.provision(readFileSync(join(cas.dataDir, FILE_NAMES.provisioningToken), 'utf8').trim());
  });

  after(async () => {
    await cas?.close();
  });

  async function assertAlive(): Promise<void> {
    assert.equal((await rawRequest(cas.url, { method: 'GET', path: HEALTH_PATHS.liveness })).status, 200);
  }

  it('rejects a session whose generated secrets would exhaust memory', async () => {
    // 64 KiB each: 500 of them made one 21 KB request grow the server to 1.3 GB.
    const count = MAX_GENERATED_SECRET_BYTES / 65536 + 1;
    const secrets = Array.from({ length: count }, (_, i) => `  - {name: s${i}, kind: ascii, size: 65536}\n`).join('');
    const error = await rejection(() => strangerClient.createSession(session('huge', `secrets:\n${secrets}`)));
    assert.equal(error.code, 'SESSION_INVALID');
    assert.match(error.message, /at most 1048576 are allowed/);
    await assertAlive();
  });

  it('rejects a session with more secrets than the limit', async () => {
    const secrets = Array.from({ length: MAX_SECRETS + 1 }, (_, i) => `  - {name: k${i}, kind: private-key}\n`).join('');
    const error = await rejection(() => strangerClient.createSession(session('many', `secrets:\n${secrets}`)));
    assert.equal(error.code, 'SESSION_INVALID');
    assert.match(error.message, /at most 256 are allowed/);
  });

  it('answers health probes while RSA keys are generated', async () => {
    const secrets = Array.from({ length: 8 }, (_, i) => `  - {name: k${i}, kind: private-key, key_type: RSA-3072}\n`).join('');
    const order: string[] = [];
    const creating = strangerClient.createSession(session('rsa-keys', `secrets:\n${secrets}`)).then(() => order.push('created'));
    // Generating the keys on the event loop kept every other request waiting until the create finished.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await rawRequest(cas.url, { method: 'GET', path: HEALTH_PATHS.liveness }).then(() => order.push('alive'));
    await creating;
    assert.deepEqual(order, ['alive', 'created']);
  });

  it('lets other writers go on while RSA keys are generated', async () => {
    const secrets = Array.from({ length: 8 }, (_, i) => `  - {name: k${i}, kind: private-key, key_type: RSA-3072}\n`).join('');
    const order: string[] = [];
    const creating = strangerClient.createSession(session('rsa-slow', `secrets:\n${secrets}`)).then(() => order.push('slow'));
    // The keys were generated while the write gate was held, so every other change waited for them. The
    // pause lets the slow request reach the server first; eight RSA-3072 keys take far longer than that.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await ownerClient.createSession(session('quick')).then(() => order.push('quick'));
    await creating;
    assert.deepEqual(order, ['quick', 'slow']);
  });

  it('rejects a YAML alias bomb as an invalid session, not an internal error', async () => {
    let text = 'x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i < 9; i += 1) text += `x${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    const error = await rejection(() => strangerClient.createSession(session('bomb', text)));
    assert.equal(error.code, 'SESSION_INVALID');
    assert.match(error.message, /aliases expand too far/);
    await assertAlive();
  });

  it('refuses to delete a namespace that has sessions below it', async () => {
    await ownerClient.createSession(session('team', 'access_policy:\n  create_sessions: [CREATOR]\n'));
    await ownerClient.createSession(session('team/web'));
    await ownerClient.createSession(session('vault', 'secrets:\n  - name: key\n    kind: ascii\n    export:\n      - namespace: team\n'));

    const error = await rejection(() => ownerClient.deleteSession('team'));
    assert.equal(error.code, 'SESSION_CONFLICT');
    assert.match(error.message, /1 session below it/);
    // Had the delete succeeded, a stranger could create "team" again, then a session below it that imports
    // what vault exports to the namespace.
    const squat = await rejection(() => strangerClient.createSession(session('team', 'access_policy:\n  create_sessions: [CREATOR]\n')));
    assert.equal(squat.code, 'SESSION_EXISTS');

    await ownerClient.deleteSession('team/web');
    await ownerClient.deleteSession('team');
  });

  it('keeps one client from using up the nonces of everyone', async () => {
    // With only a global limit of 10,000, one client reached it in 8 s and then blocked every configuration
    // request of every service until its nonces expired.
    const hoarder = clientFor(cas.url, await newIdentity());
    for (let i = 0; i < 32; i += 1) await hoarder.requestNonce();
    const error = await rejection(() => hoarder.requestNonce());
    assert.equal(error.code, 'UNAVAILABLE');
    assert.match(error.message, /this client key has 32 outstanding nonces/);
    assert.match((await strangerClient.requestNonce()).nonce, /^[0-9a-f]{64}$/);
  });

  it('answers malformed paths with the error body of the API', async () => {
    for (const path of ['/v1/sessions/%ZZ', `/v1/sessions/${'a'.repeat(2000)}`]) {
      const response = await rawRequest(cas.url, { method: 'GET', path, identity: owner });
      assert.equal(response.status, 400, path);
      assert.equal((response.body as { error: { code: string } }).error.code, 'INVALID_ARGUMENT', path);
      assert.equal(response.headers['cas-mode'], 'simulation');
    }
  });

  it('reaches every session name the session language allows', async () => {
    const names = ['_private', `deep/${'n'.repeat(120)}`];
    await ownerClient.createSession(session('deep'));
    for (const name of names) {
      const created = await ownerClient.createSession(session(name));
      assert.equal((await ownerClient.readSession(name)).hash, created.hash);
      await ownerClient.deleteSession(name);
    }
    const tooLong = await rejection(() => ownerClient.createSession(session(['a', 'b', 'c'].map((c) => c.repeat(100)).join('/'))));
    assert.equal(tooLong.code, 'SESSION_INVALID');
  });
});
