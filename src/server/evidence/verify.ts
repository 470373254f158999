import { CasError } from '../../errors/cas-error.js';
import { verifySimulatedEvidence } from './simulation.js';

/**
 * Evidence that a service presents with a configuration request, after verification. Hardware verifiers
 * add their measurements so the caller can match them against the session's attestation variants.
 */
export interface VerifiedEvidence {
  type: string;
  /** True for simulated evidence, which CAS accepts only for sessions with `security.attestation.mode: none`. */
  simulated: boolean;
  /** Measurements and attributes that a hardware verifier extracted; empty for simulated evidence. */
  claims: Record<string, unknown>;
}

/** What the evidence must bind: the verifier's nonce and the TLS client key (SPKI DER) of the request. */
export interface EvidenceBinding {
  nonce: string;
  publicKeyDer: Buffer;
}

export type EvidenceVerifier = (evidence: unknown, binding: EvidenceBinding) => Promise<VerifiedEvidence>;

const verifiers = new Map<string, EvidenceVerifier>([
  [
    'simulation',
    async (evidence, binding) => {
      const verified = verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce: binding.nonce, boundData: binding.publicKeyDer });
      return { type: 'simulation', simulated: true, claims: { platformKeyHash: verified.platformKeyHash } };
    },
  ],
]);

/** Adds the verifier for a hardware evidence type (`sgx`, `tdx`, `snp`). */
export function registerEvidenceVerifier(type: string, verifier: EvidenceVerifier): void {
  verifiers.set(type, verifier);
}

/** Verifies evidence with the verifier registered for its `type`; throws EVIDENCE_INVALID for unknown types. */
export async function verifyEvidence(evidence: unknown, binding: EvidenceBinding): Promise<VerifiedEvidence> {
  const type = typeof evidence === 'object' && evidence !== null ? (evidence as { type?: unknown }).type : undefined;
  if (typeof type !== 'string') {
    throw new CasError('EVIDENCE_INVALID', 'evidence must be a JSON object with a string "type"');
  }
  const verifier = verifiers.get(type);
  if (verifier === undefined) {
    throw new CasError('EVIDENCE_INVALID', `evidence type "${type}" is not supported; supported: ${[...verifiers.keys()].join(', ')}`);
  }
  return verifier(evidence, binding);
}
