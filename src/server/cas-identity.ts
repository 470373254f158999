import { isIP } from 'node:net';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasDatabase } from '../store/index.js';
import { certificateFingerprint, createSelfSignedCertificate, type KeyAndCertificate } from '../tls/certificates.js';

/** Meta key of the CAS's TLS identity in the encrypted database. */
export const IDENTITY_META = 'cas.identity';

/** Validity of the CAS certificate. Clients pin the certificate itself, so expiry is not what protects them. */
const CAS_CERTIFICATE_DAYS = 3650;

/**
 * Loads the CAS's TLS key and certificate from the encrypted database, creating them on first start. The
 * private key exists only inside the database (encrypted) and in process memory, never as a file.
 */
export async function loadOrCreateCasIdentity(db: CasDatabase, listenHost: string, logger: Logger): Promise<KeyAndCertificate> {
  const stored = db.getMeta(IDENTITY_META);
  if (stored !== undefined) return parseIdentity(stored);

  const dnsNames = ['localhost'];
  const ipAddresses = ['127.0.0.1', '::1'];
  const bare = listenHost.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) !== 0 && !ipAddresses.includes(bare) && bare !== '0.0.0.0' && bare !== '::') ipAddresses.push(bare);
  if (isIP(bare) === 0 && !dnsNames.includes(bare)) dnsNames.push(bare);

  const identity = await createSelfSignedCertificate({ commonName: 'cas', dnsNames, ipAddresses, usage: 'server', validDays: CAS_CERTIFICATE_DAYS });
  await db.writeGate.run(() => db.putMeta(IDENTITY_META, Buffer.from(JSON.stringify(identity), 'utf8')));
  logger.info({ certificateSha256: certificateFingerprint(identity.certificatePem) }, 'created CAS identity');
  return identity;
}

function parseIdentity(stored: Buffer): KeyAndCertificate {
  const parsed = JSON.parse(stored.toString('utf8')) as Partial<KeyAndCertificate>;
  if (typeof parsed.privateKeyPem !== 'string' || typeof parsed.certificatePem !== 'string') {
    throw new CasError('DATABASE_ERROR', 'the CAS identity stored in the database is malformed');
  }
  return { privateKeyPem: parsed.privateKeyPem, certificatePem: parsed.certificatePem };
}
