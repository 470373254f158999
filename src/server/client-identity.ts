import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { CasError } from '../errors/cas-error.js';
import { keyHashOfSpki, spkiOfCertificate } from '../tls/certificates.js';

/** The TLS client of a request: its public key (SPKI DER) and the SHA-256 (hex) of that key. */
export interface ClientKey {
  spkiDer: Buffer;
  keyHash: string;
}

const bySocket = new WeakMap<TLSSocket, ClientKey>();

/**
 * Returns the key of the request's TLS client certificate. The TLS handshake proved that the client has
 * the private key; the certificate's issuer and dates are irrelevant, because CAS identifies clients only
 * by their public key. Throws CLIENT_CERT_MISSING when the client sent no certificate.
 */
export function requireClientKey(request: FastifyRequest): ClientKey {
  const socket = request.raw.socket as TLSSocket;
  const cached = bySocket.get(socket);
  if (cached !== undefined) return cached;

  const certificate = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : undefined;
  if (certificate === undefined || certificate === null || certificate.raw === undefined) {
    throw new CasError(
      'CLIENT_CERT_MISSING',
      'this request needs a TLS client certificate; the cas CLI creates one in CAS_HOME on first use',
    );
  }
  let spkiDer: Buffer;
  try {
    spkiDer = spkiOfCertificate(certificate.raw);
  } catch (error) {
    throw new CasError('UNAUTHENTICATED', 'the TLS client certificate cannot be parsed; use a certificate for an EC, RSA or Ed25519 key', { cause: error });
  }
  const key = { spkiDer, keyHash: keyHashOfSpki(spkiDer) };
  bySocket.set(socket, key);
  return key;
}
