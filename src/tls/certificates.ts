import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import type * as x509 from '@peculiar/x509';
import { loadX509 } from './x509-library.js';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A private key and its self-signed certificate, both PEM. */
export interface KeyAndCertificate {
  privateKeyPem: string;
  certificatePem: string;
}

export interface SelfSignedOptions {
  commonName: string;
  /** DNS names and IP addresses for the subjectAltName extension (server certificates only). */
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: 'server' | 'client';
  validDays: number;
}

/**
 * Creates an ECDSA P-256 key pair and a self-signed X.509 certificate for it. CAS identifies clients by
 * their public key, so a client certificate only has to carry the key; a server certificate also carries
 * the names it is reached by, although CAS clients pin the certificate itself rather than checking names.
 */
export async function createSelfSignedCertificate(options: SelfSignedOptions): Promise<KeyAndCertificate> {
  const x509 = await loadX509();
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [options.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
  ];
  const altNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(altNames, false));

  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    // A positive 16-byte serial number: clear the top bit so DER does not read it as negative.
    serialNumber: (randomBytes(16)[0]! & 0x7f).toString(16).padStart(2, '0') + randomBytes(15).toString('hex'),
    name: `CN=${escapeDnValue(options.commonName)}`,
    // One minute of slack for clocks that are slightly behind.
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + options.validDays * 86_400_000),
    signingAlgorithm: EC_P256,
    keys,
    extensions,
  });

  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKeyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8' })
    .toString();
  return { privateKeyPem, certificatePem: certificate.toString('pem') + '\n' };
}

/**
 * The identity of a key: lower-case hex SHA-256 of its SubjectPublicKeyInfo DER. Access policies and the
 * CAS owner are stored as these hashes, so a renewed certificate for the same key keeps its access.
 */
export function keyHashOfSpki(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest('hex');
}

/** SubjectPublicKeyInfo DER of a certificate given as PEM or DER. */
export function spkiOfCertificate(certificate: string | Buffer): Buffer {
  const parsed = new X509Certificate(certificate);
  return parsed.publicKey.export({ type: 'spki', format: 'der' });
}

/** `keyHashOfSpki` of the key in a certificate given as PEM or DER. */
export function keyHashOfCertificate(certificate: string | Buffer): string {
  return keyHashOfSpki(spkiOfCertificate(certificate));
}

/** DER bytes of a PEM certificate (the first one if the text contains a chain). */
export function certificateDer(certificatePem: string): Buffer {
  return new X509Certificate(certificatePem).raw;
}

/** Lower-case hex SHA-256 of a certificate's DER encoding. */
export function certificateFingerprint(certificate: string | Buffer): string {
  const der = typeof certificate === 'string' ? certificateDer(certificate) : certificate;
  return createHash('sha256').update(der).digest('hex');
}

function escapeDnValue(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1');
}
