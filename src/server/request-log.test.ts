import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FILE_NAMES } from '../config/defaults.js';
import { loadServerSettings } from '../config/settings.js';
import { createLogger } from '../logging/logger.js';
import { openPlatform } from '../store/index.js';
import { spkiOfCertificate } from '../tls/certificates.js';
import { createCasServer, type CasServer } from './cas-server.js';
import { createSimulatedEvidence } from './evidence/simulation.js';
import { tempDir } from './testing/cas-process.js';
import { clientFor, newIdentity, rawRequest } from './testing/in-process.js';

const SESSION = `name: logged-app
version: "0.3"
services:
  - name: app
    command: /bin/app
    environment:
      PASSWORD: $$SCONE::password$$
secrets:
  - name: password
    kind: ascii
    size: 24
security:
  attestation:
    mode: none
`;

type LogLine = Record<string, unknown>;

describe('request log', () => {
  let server: CasServer;
  let url: URL;
  let root: string;
  const lines: LogLine[] = [];
  const text: string[] = [];

  before(async () => {
    root = tempDir('request-log');
    const settings = loadServerSettings({ dataDir: join(root, 'data'), platformDir: join(root, 'platform'), listen: '127.0.0.1:0', snapshotsEnabled: false, logLevel: 'info' });
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        text.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
    });
    server = await createCasServer({ settings, logger: createLogger({ level: 'info', destination: stream }) });
    url = new URL((await server.listen()).url);
  });

  after(async () => {
    await server?.close('shutdown');
  });

  /** Log lines of one request, by its request id. */
  const linesOf = (requestId: unknown): LogLine[] => lines.filter((line) => line['requestId'] === requestId);

  it('writes one line per released configuration', async () => {
    const owner = await newIdentity();
    const ownerClient = clientFor(url, owner);
    await ownerClient.provision(readFileSync(join(root, 'data', FILE_NAMES.provisioningToken), 'utf8'));
    await ownerClient.createSession(SESSION);

    const service = await newIdentity();
    const client = ownerClient.withClientKey(service.privateKeyPem, service.certificatePem);
    const { nonce } = await client.requestNonce();
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'service-platform') });
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, spkiOfCertificate(service.certificatePem));
    const configuration = await client.fetchConfiguration({ session: 'logged-app', service: 'app', nonce, evidence, hostArguments: [], hostEnvironment: {} });
    const password = configuration.environment['PASSWORD']!;
    assert.equal(password.length, 24);

    const released = lines.filter((line) => line['url'] === '/v1/configuration');
    assert.equal(released.length, 1, JSON.stringify(released));
    const line = released[0]!;
    assert.equal(line['msg'], 'request completed');
    assert.equal(line['level'], 30);
    assert.equal(line['method'], 'POST');
    assert.equal(line['statusCode'], 200);
    assert.equal(typeof line['responseTime'], 'number');
    assert.equal(line['remoteAddress'], '127.0.0.1');
    assert.equal(line['session'], 'logged-app');
    assert.equal(line['service'], 'app');
    assert.match(String(line['requestId']), /^[0-9a-f-]{36}$/);
    assert.deepEqual(linesOf(line['requestId']), [line]);

    const nonceLines = lines.filter((entry) => entry['url'] === '/v1/nonces');
    assert.equal(nonceLines.length, 1);
    assert.deepEqual(linesOf(nonceLines[0]!['requestId']), [nonceLines[0]]);
    assert.ok(!text.some((entry) => entry.includes(password)), 'a log line contains the released password');
  });

  it('logs a rejected request with its code', async () => {
    const identity = await newIdentity();
    const response = await rawRequest(url, { method: 'POST', path: '/v1/configuration', identity, body: '{"session":"logged-app"}' });
    assert.equal(response.status, 400);

    const completed = lines.filter((line) => line['msg'] === 'request completed' && line['statusCode'] === 400);
    assert.equal(completed.length, 1);
    const requestLines = linesOf(completed[0]!['requestId']);
    assert.deepEqual(
      requestLines.map((line) => line['msg']),
      ['request rejected', 'request completed'],
    );
    assert.equal(requestLines[0]!['code'], 'INVALID_ARGUMENT');
  });

  it('writes no line when a request arrives', () => {
    assert.equal(lines.filter((line) => line['msg'] === 'incoming request').length, 0);
  });
});
