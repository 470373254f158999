import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { CasClient } from '../../client/cas-client.js';
import { loadServerSettings, type ServerSettingsInput } from '../../config/settings.js';
import { silentLogger } from '../../logging/logger.js';
import { createSelfSignedCertificate, keyHashOfCertificate, type KeyAndCertificate } from '../../tls/certificates.js';
import { createCasServer, type CasServer, type CasServerOptions } from '../cas-server.js';
import { tempDir } from './cas-process.js';

export interface TestCas {
  server: CasServer;
  url: URL;
  dataDir: string;
  platformDir: string;
  close(): Promise<void>;
}

/** Starts a CAS server in this process on 127.0.0.1 with a free port and fresh temporary directories. */
export async function startTestCas(
  input: ServerSettingsInput = {},
  options: Pick<CasServerOptions, 'nonceGenerator'> = {},
): Promise<TestCas> {
  const root = tempDir('api');
  const dataDir = input.dataDir ?? join(root, 'data');
  const platformDir = input.platformDir ?? join(root, 'platform');
  const settings = loadServerSettings({ listen: '127.0.0.1:0', logLevel: 'silent', ...input, dataDir, platformDir });
  const server = await createCasServer({ settings, logger: silentLogger(), ...options });
  const { url } = await server.listen();
  return { server, url: new URL(url), dataDir, platformDir, close: () => server.close('shutdown') };
}

export interface TestIdentity extends KeyAndCertificate {
  keyHash: string;
}

export async function newIdentity(): Promise<TestIdentity> {
  const created = await createSelfSignedCertificate({ commonName: 'test client', usage: 'client', validDays: 1 });
  return { ...created, keyHash: keyHashOfCertificate(created.certificatePem) };
}

/** Creates a client that does not check the server certificate (tests of the server, not of pinning). */
export function clientFor(url: URL, identity: KeyAndCertificate): CasClient {
  return new CasClient({ casUrl: url, clientKeyPem: identity.privateKeyPem, clientCertificatePem: identity.certificatePem, trust: { kind: 'unverified' } });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/**
 * Sends a raw HTTPS request, optionally without a client certificate or with a body that is not JSON, to
 * test what the typed client never sends.
 */
export async function rawRequest(
  url: URL,
  options: { method: string; path: string; identity?: KeyAndCertificate; body?: string | Buffer; contentType?: string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: url.hostname,
        port: url.port,
        method: options.method,
        path: options.path,
        rejectUnauthorized: false,
        ...(options.identity === undefined ? {} : { key: options.identity.privateKeyPem, cert: options.identity.certificatePem }),
        headers: options.body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // Not JSON: keep the text.
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
