import { createHash, createPublicKey } from 'node:crypto';
import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import { platformIdFromPublicKeyPem, verifyPlatformSignature } from '../store/platform.js';
import type { EvidenceType, Platform } from '../store/types.js';
import { certificateDer } from '../tls/certificates.js';

/**
 * Evidence that a platform presents to be registered as a backup target. In simulation mode it is a
 * statement signed by the platform key that binds the CAS's nonce and the CAS certificate (so it cannot be
 * replayed, nor forwarded to another CAS). It proves possession of the platform key and nothing about the
 * machine. Hardware evidence (a quote whose report data binds the platform key) is not implemented yet.
 *
 * Wire format (JSON): { "type": "simulation", "platformPublicKey": SPKI PEM,
 *   "statement": base64(UTF-8 JSON of RegistrationStatement), "signature": base64(ECDSA P-256 r || s) }.
 * The platform key signs REGISTRATION_CONTEXT || statement bytes (after the platform's own prefix).
 */
export const REGISTRATION_CONTEXT = Buffer.from('CAS backup registration v1\0', 'ascii');

export interface RegistrationStatement {
  purpose: 'backup-registration';
  /** Lower-case hex nonce issued by the CAS. */
  nonce: string;
  /** Lower-case hex SHA-256 of the DER of the CAS certificate that the platform registers with. */
  casCertificateSha256: string;
  /** ISO 8601; informational, freshness comes from the nonce. */
  createdAt: string;
}

export const registrationEvidenceSchema = z.strictObject({
  type: z.literal('simulation'),
  platformPublicKey: z.string().min(1).max(1024),
  statement: z.string().min(1).max(4096),
  signature: z.string().min(1).max(256),
});

export type RegistrationEvidence = z.infer<typeof registrationEvidenceSchema>;

const statementSchema = z.strictObject({
  purpose: z.literal('backup-registration'),
  nonce: z.string().regex(/^[0-9a-f]{32,128}$/),
  casCertificateSha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
});

/** Creates registration evidence for `platform`, bound to the CAS's nonce and certificate. */
export function createRegistrationEvidence(platform: Platform, nonce: string, casCertificatePem: string): RegistrationEvidence {
  const statement: RegistrationStatement = {
    purpose: 'backup-registration',
    nonce: nonce.toLowerCase(),
    casCertificateSha256: sha256Hex(certificateDer(casCertificatePem)),
    createdAt: new Date().toISOString(),
  };
  const bytes = Buffer.from(JSON.stringify(statement), 'utf8');
  return {
    type: 'simulation',
    platformPublicKey: platform.publicKeyPem,
    statement: bytes.toString('base64'),
    signature: platform.sign(Buffer.concat([REGISTRATION_CONTEXT, bytes])).toString('base64'),
  };
}

export interface VerifiedRegistration {
  publicKeyPem: string;
  platformId: string;
  /** Lower-case hex SHA-256 of the platform key's SPKI DER (the audit log's platformKeyHash). */
  platformKeyHash: string;
  evidenceType: EvidenceType;
}

/**
 * Checks registration evidence: the signature under the platform key in it, the purpose, the nonce and the
 * CAS certificate. Throws EVIDENCE_INVALID naming the failed check.
 */
export function verifyRegistrationEvidence(input: unknown, expected: { nonce: string; casCertificatePem: string }): VerifiedRegistration {
  const parsed = registrationEvidenceSchema.safeParse(input);
  if (!parsed.success) {
    throw new CasError('EVIDENCE_INVALID', `registration evidence is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const evidence = parsed.data;
  let platformId: string;
  try {
    platformId = platformIdFromPublicKeyPem(evidence.platformPublicKey);
  } catch (error) {
    throw new CasError('EVIDENCE_INVALID', 'registration evidence: platformPublicKey is not a P-256 public key in SPKI PEM form', { cause: error });
  }
  const bytes = Buffer.from(evidence.statement, 'base64');
  const signature = Buffer.from(evidence.signature, 'base64');
  if (!verifyPlatformSignature(evidence.platformPublicKey, Buffer.concat([REGISTRATION_CONTEXT, bytes]), signature)) {
    throw new CasError('EVIDENCE_INVALID', `registration evidence: the signature does not verify with the key of platform ${platformId}`);
  }
  let statement: RegistrationStatement;
  try {
    statement = statementSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (error) {
    throw new CasError('EVIDENCE_INVALID', 'registration evidence: the signed statement is not a registration statement', { cause: error });
  }
  if (statement.nonce !== expected.nonce.toLowerCase()) {
    throw new CasError('EVIDENCE_INVALID', 'registration evidence: the statement is for another nonce');
  }
  if (statement.casCertificateSha256 !== sha256Hex(certificateDer(expected.casCertificatePem))) {
    throw new CasError('EVIDENCE_INVALID', 'registration evidence: the statement names another CAS certificate; the platform attested a different CAS');
  }
  const publicKeyPem = evidence.platformPublicKey;
  const platformKeyHash = sha256Hex(createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' }));
  return { publicKeyPem, platformId, platformKeyHash, evidenceType: 'simulation' };
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
