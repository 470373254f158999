import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  webcrypto,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import type * as x509 from '@peculiar/x509';
import { CasError } from '../errors/cas-error.js';
import { loadX509 } from '../tls/x509-library.js';

/**
 * The audit key signs every entry with ECDSA P-256 and SHA-256; signatures are IEEE P1363 (`r || s`,
 * 64 bytes) written as 128 lower-case hex characters. Its certificate is issued by the CAS identity key, so
 * a verifier that trusts the CAS certificate can trust the log.
 */

const AUDIT_KEY_CURVE = 'prime256v1';

/** Creates a new audit key pair (ECDSA P-256). */
export function createAuditKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: AUDIT_KEY_CURVE });
}

export function signEntryBytes(privateKey: KeyObject, bytes: Buffer): string {
  return sign('sha256', bytes, { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('hex');
}

export function verifyEntryBytes(publicKey: KeyObject, bytes: Buffer, signatureHex: string): boolean {
  return verify('sha256', bytes, { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(signatureHex, 'hex'));
}

/** Checks that a key is an EC key on P-256, the only curve the audit format allows. */
export function isP256Key(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === AUDIT_KEY_CURVE;
}

const WEBCRYPTO_CURVES: Record<string, { namedCurve: string; hash: string }> = {
  prime256v1: { namedCurve: 'P-256', hash: 'SHA-256' },
  secp384r1: { namedCurve: 'P-384', hash: 'SHA-384' },
  secp521r1: { namedCurve: 'P-521', hash: 'SHA-512' },
};

export interface IssueAuditCertificateOptions {
  /** The CAS identity private key (ECDSA P-256, P-384 or P-521). */
  casKey: KeyObject;
  /** The CAS identity certificate (PEM) whose key is `casKey`. */
  casCertPem: string;
  /** The audit public key (ECDSA P-256). */
  auditPublicKey: KeyObject;
  /** Defaults to the CAS certificate's notAfter. */
  notAfter?: Date;
}

/**
 * Issues the audit key's certificate with the CAS identity key: an end-entity certificate (CA false) with
 * key usage digitalSignature, issuer and authority key identifier taken from the CAS certificate, valid from
 * one minute ago until the CAS certificate expires. Returns PEM; the signer's chain is
 * `[auditCertificatePem, casCertPem]`.
 */
export async function issueAuditCertificate(options: IssueAuditCertificateOptions): Promise<string> {
  const x509 = await loadX509();
  const casCertificate = new X509Certificate(options.casCertPem);
  const casPublicFromKey = createPublicKey(options.casKey).export({ type: 'spki', format: 'der' });
  if (!casPublicFromKey.equals(casCertificate.publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new CasError('INVALID_ARGUMENT', 'The CAS key does not match the CAS certificate; pass the key of that certificate.');
  }
  if (!isP256Key(options.auditPublicKey)) {
    throw new CasError('INVALID_ARGUMENT', 'The audit public key must be an ECDSA P-256 key.');
  }
  const curve = options.casKey.asymmetricKeyType === 'ec' ? WEBCRYPTO_CURVES[options.casKey.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
  if (curve === undefined) {
    throw new CasError('INVALID_ARGUMENT', 'The CAS key must be an ECDSA key on P-256, P-384 or P-521.');
  }

  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    options.casKey.export({ type: 'pkcs8', format: 'der' }),
    { name: 'ECDSA', namedCurve: curve.namedCurve },
    false,
    ['sign'],
  );
  const publicKey = await webcrypto.subtle.importKey(
    'spki',
    options.auditPublicKey.export({ type: 'spki', format: 'der' }),
    { name: 'ECDSA', namedCurve: 'P-256' },
    true,
    ['verify'],
  );
  const issuer = new x509.X509Certificate(options.casCertPem);
  const certificate = await x509.X509CertificateGenerator.create({
    // A positive 16-byte serial number: clear the top bit so DER does not read it as negative.
    serialNumber: (randomBytes(1)[0]! & 0x7f).toString(16).padStart(2, '0') + randomBytes(15).toString('hex'),
    subject: 'CN=CAS audit log',
    issuer: issuer.subjectName.toString(),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: options.notAfter ?? issuer.notAfter,
    publicKey: publicKey as unknown as x509.PublicKeyType,
    signingKey: signingKey as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[0] extends { signingKey: infer K } ? K : never,
    signingAlgorithm: { name: 'ECDSA', hash: curve.hash },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey as unknown as x509.PublicKeyType),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey),
    ],
  });
  return certificate.toString('pem') + '\n';
}

/** The result of checking one certificate chain carried by an entry. */
export type ChainCheck =
  | { ok: true; auditKey: KeyObject; auditCertificate: X509Certificate; casCertificate: X509Certificate }
  | { ok: false; reason: string };

/**
 * Checks that `chain[0]` is an end-entity certificate for a P-256 key, issued and signed by `chain[1]` (the
 * CAS certificate), that each further certificate issued the one before it, and that `time` lies within the
 * audit certificate's validity.
 */
export function checkAuditChain(chain: string[], time: Date): ChainCheck {
  let certificates: X509Certificate[];
  try {
    certificates = chain.map((pem) => new X509Certificate(pem));
  } catch {
    return { ok: false, reason: 'the certificate chain does not parse' };
  }
  const [auditCertificate, casCertificate] = certificates;
  if (auditCertificate === undefined || casCertificate === undefined) return { ok: false, reason: 'the certificate chain has fewer than two certificates' };
  if (auditCertificate.ca) return { ok: false, reason: 'the audit certificate is a CA certificate' };
  if (!isP256Key(auditCertificate.publicKey)) return { ok: false, reason: 'the audit key is not an ECDSA P-256 key' };
  for (let i = 0; i + 1 < certificates.length; i++) {
    const subject = certificates[i]!;
    const issuer = certificates[i + 1]!;
    if (!isSignedBy(subject, issuer)) {
      return { ok: false, reason: `certificate ${i} of the chain is not signed by certificate ${i + 1}` };
    }
  }
  if (time < new Date(auditCertificate.validFrom) || time > new Date(auditCertificate.validTo)) {
    return { ok: false, reason: 'the entry time is outside the validity of the audit certificate' };
  }
  return { ok: true, auditKey: auditCertificate.publicKey, auditCertificate, casCertificate };
}

/** Checks that the given CAS certificate issued the audit certificate (issuer name and signature). */
export function isIssuedBy(auditCertificate: X509Certificate, casCertificatePem: string): boolean {
  let cas: X509Certificate;
  try {
    cas = new X509Certificate(casCertificatePem);
  } catch {
    throw new CasError('INVALID_ARGUMENT', 'The CAS certificate does not parse as a PEM X.509 certificate; pass the CAS certificate file.');
  }
  return isSignedBy(auditCertificate, cas);
}

/**
 * Checks that `subject` names `issuer` as its issuer and carries a valid signature by the issuer's key. This is
 * deliberately not OpenSSL's `checkIssued`, which also requires keyCertSign in the issuer's key usage: the
 * CAS identity certificate is an end-entity TLS certificate that verifiers pin directly, and it signs
 * exactly one kind of certificate, the audit key's.
 */
function isSignedBy(subject: X509Certificate, issuer: X509Certificate): boolean {
  return subject.issuer === issuer.subject && subject.verify(issuer.publicKey);
}

export function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}
