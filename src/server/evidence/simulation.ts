import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { CasError } from '../../errors/cas-error.js';
import { parsePlatformPublicKey } from '../../store/key-wrap.js';
import { LruCache } from '../../attestation/lru.js';
import { verifyPlatformSignature } from '../../store/platform.js';
import type { Platform } from '../../store/types.js';

/**
 * Simulated evidence: a statement signed by a platform key that binds a nonce to a SHA-256 digest (of a
 * service's ephemeral public key, or of the CAS certificate). It proves only that someone holding that
 * platform key produced it; it proves nothing about the code that runs. CAS accepts it only for sessions
 * whose `security.attestation.mode` is `none`.
 *
 * Wire format (JSON):
 *   { "type": "simulation", "platformPublicKey": SPKI PEM,
 *     "statement": base64(UTF-8 JSON of SimulatedStatement), "signature": base64(ECDSA P-256 r || s) }
 * The platform key signs SIMULATED_EVIDENCE_CONTEXT || statement bytes (plus the platform's own prefix).
 */
export const SIMULATED_EVIDENCE_CONTEXT = Buffer.from('CAS simulated evidence v1\0', 'ascii');

/** What the digest in a statement covers. */
export type SimulatedPurpose = 'service-key' | 'cas-certificate';

export interface SimulatedStatement {
  purpose: SimulatedPurpose;
  /** Lower-case hex nonce chosen by the verifier. */
  nonce: string;
  /** Lower-case hex SHA-256 of the bound data: SPKI DER for `service-key`, certificate DER for `cas-certificate`. */
  boundSha256: string;
  /** ISO 8601 time of creation; informational only, freshness comes from the nonce. */
  createdAt: string;
}

export const simulatedEvidenceSchema = z
  .object({
    type: z.literal('simulation'),
    platformPublicKey: z.string().min(1).max(1024),
    statement: z.string().min(1).max(4096),
    signature: z.string().min(1).max(256),
  })
  .strict();

export type SimulatedEvidence = z.infer<typeof simulatedEvidenceSchema>;

const statementSchema = z
  .object({
    purpose: z.enum(['service-key', 'cas-certificate']),
    nonce: z.string().regex(/^[0-9a-f]{32,128}$/),
    boundSha256: z.string().regex(/^[0-9a-f]{64}$/),
    createdAt: z.string(),
  })
  .strict();

/** Signs a statement with the platform key. */
export function createSimulatedEvidence(platform: Platform, purpose: SimulatedPurpose, nonce: string, boundData: Buffer): SimulatedEvidence {
  const statement: SimulatedStatement = {
    purpose,
    nonce: nonce.toLowerCase(),
    boundSha256: sha256Hex(boundData),
    createdAt: new Date().toISOString(),
  };
  const statementBytes = Buffer.from(JSON.stringify(statement), 'utf8');
  const signature = platform.sign(Buffer.concat([SIMULATED_EVIDENCE_CONTEXT, statementBytes]));
  return {
    type: 'simulation',
    platformPublicKey: platform.publicKeyPem,
    statement: statementBytes.toString('base64'),
    signature: signature.toString('base64'),
  };
}

/** Result of checking simulated evidence; `platformKeyHash` is SHA-256 (hex) of the signing key's SPKI DER. */
export interface VerifiedSimulatedEvidence {
  type: 'simulation';
  platformKeyHash: string;
  statement: SimulatedStatement;
}

/**
 * Checks the signature and that the statement has the expected purpose, nonce and bound data. Throws
 * EVIDENCE_INVALID naming the first check that failed.
 */
export function verifySimulatedEvidence(
  input: unknown,
  expected: { purpose: SimulatedPurpose; nonce: string; boundData: Buffer },
): VerifiedSimulatedEvidence {
  const parsed = simulatedEvidenceSchema.safeParse(input);
  if (!parsed.success) {
    throw new CasError('EVIDENCE_INVALID', `simulated evidence is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const evidence = parsed.data;

  const platformKey = platformKeys.get(evidence.platformPublicKey);
  const statementBytes = Buffer.from(evidence.statement, 'base64');
  const signature = Buffer.from(evidence.signature, 'base64');
  if (!verifyPlatformSignature(platformKey.key, Buffer.concat([SIMULATED_EVIDENCE_CONTEXT, statementBytes]), signature)) {
    throw new CasError('EVIDENCE_INVALID', 'simulated evidence: the signature does not verify with the platform key in the evidence');
  }

  let statement: SimulatedStatement;
  try {
    statement = statementSchema.parse(JSON.parse(statementBytes.toString('utf8')));
  } catch (error) {
    throw new CasError('EVIDENCE_INVALID', 'simulated evidence: the signed statement is not a valid statement', { cause: error });
  }
  if (statement.purpose !== expected.purpose) {
    throw new CasError('EVIDENCE_INVALID', `simulated evidence: statement purpose is "${statement.purpose}", expected "${expected.purpose}"`);
  }
  if (statement.nonce !== expected.nonce.toLowerCase()) {
    throw new CasError('EVIDENCE_INVALID', 'simulated evidence: the statement is for another nonce');
  }
  const boundSha256 = sha256Hex(expected.boundData);
  if (statement.boundSha256 !== boundSha256) {
    const what = expected.purpose === 'service-key' ? 'the TLS client key of this connection' : 'the certificate the CAS presented';
    throw new CasError('EVIDENCE_INVALID', `simulated evidence: the statement is bound to another key or certificate, not to ${what}`, {
      details: { expected: boundSha256, actual: statement.boundSha256 },
    });
  }
  return { type: 'simulation', platformKeyHash: platformKey.keyHash, statement };
}

/** A parsed platform public key with the SHA-256 (hex) of its SPKI DER. */
export interface ParsedPlatformKey {
  key: KeyObject;
  keyHash: string;
}

/**
 * Parsed platform public keys, keyed by the exact PEM text of the evidence. Parsing a PEM key with
 * OpenSSL 3 costs more than the signature check itself, and a service sends the same platform key with
 * every request. A PEM that differs in any character, such as its line breaks, is parsed on its own. When
 * the cache is full the least recently used entry is dropped, so a client that sends new keys only causes
 * misses.
 */
export class PlatformKeyCache {
  private readonly entries: LruCache<string, ParsedPlatformKey>;

  constructor(maxEntries: number) {
    this.entries = new LruCache(maxEntries);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Returns the parsed key; throws EVIDENCE_INVALID for text that is no PEM public key, INVALID_ARGUMENT for a key other than P-256. */
  get(publicKeyPem: string): ParsedPlatformKey {
    const cached = this.entries.get(publicKeyPem);
    if (cached !== undefined) return cached;

    let der: Buffer;
    try {
      der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
    } catch (error) {
      throw new CasError('EVIDENCE_INVALID', 'simulated evidence: platformPublicKey is not a PEM public key', { cause: error });
    }
    const parsed = { key: parsePlatformPublicKey(publicKeyPem), keyHash: sha256Hex(der) };
    this.entries.set(publicKeyPem, parsed);
    return parsed;
  }
}

/** Platform keys seen in evidence; a deployment has one per machine that runs services. */
const platformKeys = new PlatformKeyCache(1024);

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
