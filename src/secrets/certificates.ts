import { randomBytes } from 'node:crypto';
import type * as x509 from '@peculiar/x509';
import type { KeyType } from '../policy/types.js';
import { loadX509 } from '../tls/x509-library.js';
import { importPublicKey, importSigningKey, webCryptoAlgorithms } from './keys.js';

/** The key that signs a certificate: the issuer CA's, or the subject's own for a self-signed one. */
export interface CertificateSigner {
  privateKeyPem: string;
  keyType: KeyType;
  /** The issuer's certificate; absent for a self-signed certificate. */
  certificatePem?: string;
}

export interface CertificateRequest {
  commonName: string;
  publicKeyPem: string;
  keyType: KeyType;
  ca: boolean;
  dns: string[];
  ip: string[];
  /** `server` or `client` restricts extendedKeyUsage to that role; absent allows both. */
  endpoint?: 'server' | 'client';
  notBefore: Date;
  notAfter: Date;
  signer: CertificateSigner;
}

/**
 * Issues an X.509 v3 certificate with @peculiar/x509 and returns it as PEM. CA certificates get
 * basicConstraints cA (critical) and keyUsage keyCertSign and cRLSign. Leaf certificates get
 * digitalSignature (plus keyEncipherment for RSA), extendedKeyUsage from `endpoint`, and the DNS names and
 * IP addresses as subjectAltName. The serial number is 16 random bytes with the top bit cleared.
 */
export async function issueCertificate(request: CertificateRequest): Promise<string> {
  const x509 = await loadX509();
  const publicKey = await importPublicKey(request.publicKeyPem, request.keyType);
  const signingKey = await importSigningKey(request.signer.privateKeyPem, request.signer.keyType);
  const issuerCertificate =
    request.signer.certificatePem === undefined ? undefined : new x509.X509Certificate(request.signer.certificatePem);

  const extensions: x509.Extension[] = [];
  if (request.ca) {
    extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
    extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true));
  } else {
    extensions.push(new x509.BasicConstraintsExtension(false, undefined, true));
    const rsa = request.keyType === 'RSA-2048' || request.keyType === 'RSA-3072';
    const usage = x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0);
    extensions.push(new x509.KeyUsagesExtension(usage, true));
    const purposes =
      request.endpoint === 'server'
        ? [x509.ExtendedKeyUsage.serverAuth]
        : request.endpoint === 'client'
          ? [x509.ExtendedKeyUsage.clientAuth]
          : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
    extensions.push(new x509.ExtendedKeyUsageExtension(purposes, false));
    const names = [
      ...request.dns.map((value) => ({ type: 'dns' as const, value })),
      ...request.ip.map((value) => ({ type: 'ip' as const, value })),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  }
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(publicKey));
  if (issuerCertificate !== undefined) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerCertificate, false));
  } else {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(publicKey, false));
  }

  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f;
  const subject: x509.JsonName = [{ CN: [request.commonName] }];

  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject,
    issuer: issuerCertificate?.subjectName ?? subject,
    notBefore: request.notBefore,
    notAfter: request.notAfter,
    publicKey,
    signingKey,
    signingAlgorithm: webCryptoAlgorithms(request.signer.keyType).signingAlgorithm,
    extensions,
  });
  const pem = certificate.toString('pem');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
