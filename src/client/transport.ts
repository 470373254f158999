import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { CasError, ERROR_CODES, type ErrorCode } from '../errors/cas-error.js';
import { certificateDer, certificateFingerprint } from '../tls/certificates.js';

/** How the client decides whether to trust the server certificate. */
export type ServerTrust =
  /** Proceed only if the server presents exactly this certificate (the normal case after `cas attest`). */
  | { kind: 'pinned'; certificatePem: string }
  /**
   * Accept any certificate and return it to the caller, who must verify it another way: `cas attest` checks
   * it against the CAS's evidence, `cas provision` relies on the one-time token.
   */
  | { kind: 'unverified' };

export interface TransportOptions {
  casUrl: URL;
  /** TLS client key and certificate: the caller's identity, or an ephemeral key bound to evidence. */
  clientKeyPem: string;
  clientCertificatePem: string;
  trust: ServerTrust;
  timeoutMs?: number;
}

export interface CasResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: unknown;
  /** DER of the certificate the server presented on this connection. */
  serverCertificateDer: Buffer;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Sends one JSON request over a new TLS connection. The connection is established and the server
 * certificate checked before any request byte is written; an error response from CAS is thrown as the
 * CasError it names.
 */
export async function sendRequest(
  options: TransportOptions,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
): Promise<CasResponse> {
  const socket = await connectVerified(options);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const serverCertificateDer = socket.getPeerCertificate(false).raw;

  const response = await new Promise<{ status: number; headers: IncomingHttpHeaders; text: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        createConnection: () => socket,
        method,
        path,
        host: options.casUrl.hostname,
        port: options.casUrl.port,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }),
        },
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new CasError('TIMEOUT', `no response from CAS at ${options.casUrl.origin} within ${(options.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000} s`)));
    req.on('error', (error) => reject(error instanceof CasError ? error : connectionFailed(options.casUrl, error)));
    req.end(payload);
  }).finally(() => socket.destroy());

  const parsed = parseJson(response.text);
  if (response.status >= 400) throw errorFromResponse(options.casUrl, response.status, parsed);
  return { status: response.status, headers: response.headers, body: parsed, serverCertificateDer };
}

/** Opens a TLS connection and checks the server certificate against the pin before returning it. */
async function connectVerified(options: TransportOptions): Promise<TLSSocket> {
  const { casUrl } = options;
  if (casUrl.protocol !== 'https:') {
    throw new CasError('INVALID_ARGUMENT', `CAS URL ${casUrl.href} must start with https:// because CAS serves only HTTPS`);
  }
  const host = casUrl.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = casUrl.port === '' ? 443 : Number(casUrl.port);

  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const tlsSocket = tlsConnect({
      host,
      port,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      key: options.clientKeyPem,
      cert: options.clientCertificatePem,
      // The certificate is self-signed; it is compared with the pinned one below instead of a CA chain.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => {
      tlsSocket.destroy();
      reject(new CasError('TIMEOUT', `TLS connection to CAS at ${casUrl.origin} timed out`));
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    tlsSocket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(tlsSocket);
    });
    tlsSocket.once('error', (error) => {
      clearTimeout(timer);
      reject(connectionFailed(casUrl, error));
    });
  });

  if (options.trust.kind === 'pinned') {
    const presented = socket.getPeerCertificate(false).raw;
    const pinned = certificateDer(options.trust.certificatePem);
    if (presented === undefined || !presented.equals(pinned)) {
      socket.destroy();
      throw new CasError(
        'SERVER_CERT_MISMATCH',
        `the CAS at ${casUrl.origin} presented a certificate (SHA-256 ${presented ? certificateFingerprint(presented) : 'none'}) that differs from the one pinned by cas attest (SHA-256 ${certificateFingerprint(pinned)}); if the CAS was legitimately replaced, run: cas attest --cas ${casUrl.origin}`,
        { details: { url: casUrl.origin } },
      );
    }
  }
  return socket;
}

function connectionFailed(casUrl: URL, error: Error): CasError {
  const code = (error as NodeJS.ErrnoException).code;
  return new CasError('CONNECTION_FAILED', `cannot reach CAS at ${casUrl.origin}: ${code ?? error.message}; check the URL and that cas serve is running`, {
    cause: error,
  });
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorFromResponse(casUrl: URL, status: number, body: unknown): CasError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  const code = typeof error?.code === 'string' && (ERROR_CODES as readonly string[]).includes(error.code) ? (error.code as ErrorCode) : 'INTERNAL';
  const message = typeof error?.message === 'string' ? error.message : `CAS at ${casUrl.origin} returned HTTP ${status}`;
  const details = typeof error?.details === 'object' && error.details !== null ? (error.details as Record<string, unknown>) : {};
  return new CasError(code, message, { details: { ...details, status } });
}
