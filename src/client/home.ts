import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { createSelfSignedCertificate, keyHashOfCertificate, type KeyAndCertificate } from '../tls/certificates.js';

/**
 * The client's home directory (`$CAS_HOME`, default `~/.cas`): its key and self-signed certificate, and the
 * pinned certificate of each CAS it has attested. The directory is 0700 and every file 0600.
 *
 * Layout:
 *   client-key.pem            PKCS#8 private key of this client identity
 *   client-cert.pem           self-signed certificate for that key (CAS matches only the key)
 *   pinned/HOST_PORT.pem      the certificate of the CAS at https://HOST:PORT, written by `cas attest`
 */
export const CLIENT_KEY_FILE = 'client-key.pem';
export const CLIENT_CERT_FILE = 'client-cert.pem';
export const PINNED_DIR = 'pinned';

export interface ClientIdentity extends KeyAndCertificate {
  /** SHA-256 (hex) of the public key: the identity that access policies name. */
  keyHash: string;
}

export function casHome(): string {
  return DEFAULTS.casHome();
}

/** Loads the client identity from CAS_HOME, creating the key and certificate on first use. */
export async function loadOrCreateIdentity(home: string = casHome()): Promise<ClientIdentity> {
  ensurePrivateDir(home);
  const keyPath = join(home, CLIENT_KEY_FILE);
  const certPath = join(home, CLIENT_CERT_FILE);
  if (existsSync(keyPath) && existsSync(certPath)) {
    const privateKeyPem = readPrivateFile(keyPath);
    const certificatePem = readPrivateFile(certPath);
    return { privateKeyPem, certificatePem, keyHash: keyHashOfCertificate(certificatePem) };
  }
  if (existsSync(keyPath) !== existsSync(certPath)) {
    throw new CasError(
      'INVALID_ARGUMENT',
      `client identity in ${home} is incomplete: one of ${CLIENT_KEY_FILE} and ${CLIENT_CERT_FILE} is missing; restore it or remove both to create a new identity`,
    );
  }

  const created = await createSelfSignedCertificate({ commonName: 'cas client', usage: 'client', validDays: 3650 });
  writePrivateFile(keyPath, created.privateKeyPem);
  writePrivateFile(certPath, created.certificatePem);
  return { ...created, keyHash: keyHashOfCertificate(created.certificatePem) };
}

/** File name under `pinned/` for a CAS URL: `HOST_PORT.pem`, with characters outside [A-Za-z0-9.-] replaced. */
export function pinFileName(casUrl: URL): string {
  const host = casUrl.hostname.replace(/[^A-Za-z0-9.-]/g, '_');
  const port = casUrl.port === '' ? '443' : casUrl.port;
  return `${host}_${port}.pem`;
}

/** The pinned CAS certificate (PEM) for the URL, or undefined when `cas attest` has not pinned one. */
export function readPinnedCertificate(casUrl: URL, home: string = casHome()): string | undefined {
  const path = join(home, PINNED_DIR, pinFileName(casUrl));
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/** Pins the CAS certificate for the URL, replacing an earlier pin. */
export function writePinnedCertificate(casUrl: URL, certificatePem: string, home: string = casHome()): string {
  ensurePrivateDir(home);
  ensurePrivateDir(join(home, PINNED_DIR));
  const path = join(home, PINNED_DIR, pinFileName(casUrl));
  writePrivateFile(path, certificatePem);
  return path;
}

function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o700);
}

/** Writes through a temporary file and a rename, so a crash never leaves half a key behind. */
function writePrivateFile(path: string, content: string): void {
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, content, { mode: 0o600, flag: 'w' });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}

function readPrivateFile(path: string): string {
  const mode = statSync(path).mode;
  if ((mode & 0o077) !== 0) {
    throw new CasError(
      'INVALID_ARGUMENT',
      `${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${path}`,
    );
  }
  return readFileSync(path, 'utf8');
}
