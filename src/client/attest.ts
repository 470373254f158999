import { randomBytes, X509Certificate } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import { verifySimulatedEvidence } from '../server/evidence/simulation.js';
import { certificateFingerprint } from '../tls/certificates.js';
import { isHardwareEvidenceType, verifyCasHardwareEvidence, type CasCollateralOptions, type CasExpectations } from './cas-evidence.js';
import { connectUnverified } from './connect.js';
import { casHome, writePinnedCertificate } from './home.js';

export interface AttestResult {
  url: string;
  mode: 'simulation' | 'hardware';
  certificateSha256: string;
  pinnedAt: string;
  /** Hardware mode: the verified TEE type, TCB status and measurements. */
  evidence?: { teeType: string; tcbStatus: string; advisoryIds: string[]; measurements: Record<string, unknown> };
}

/**
 * Verifies the CAS's evidence for a fresh nonce and pins the certificate that the CAS presented on the
 * same TLS connection. The evidence must bind that certificate, so a machine in the middle cannot have its
 * own certificate pinned. Simulated evidence is accepted only with `acceptSimulation`, because it proves
 * nothing about the code that runs.
 */
export async function attestCas(options: {
  cas?: string;
  acceptSimulation: boolean;
  home?: string;
  /** How to verify hardware evidence: the expected measurements and where collateral comes from. */
  hardware?: { expectations: CasExpectations; collateral: CasCollateralOptions };
}): Promise<AttestResult> {
  const home = options.home ?? casHome();
  const { client } = await connectUnverified(options.cas, home);
  const nonce = randomBytes(32).toString('hex');
  const response = await client.casEvidence(nonce);
  const presented = response.presentedCertificateDer;
  const evidenceType = (response.evidence as { type?: unknown } | undefined)?.type;

  if (isHardwareEvidenceType(evidenceType)) {
    // NOTE: never run against a hardware-mode CAS, which needs a TEE that the test machines lack. The
    // verification is tested with a recorded quote (cas-evidence.test.ts), and the CAS side in
    // collectCasEvidence only on file layouts.
    const result = await verifyCasHardwareEvidence(response.evidence, {
      nonce,
      certificateDer: presented,
      expectations: options.hardware?.expectations ?? { variants: [], security: { tolerate: [], ignoreAdvisories: [] } },
      collateral: options.hardware?.collateral ?? {},
    });
    const certificatePem = new X509Certificate(presented).toString();
    writePinnedCertificate(client.casUrl, certificatePem, home);
    return {
      url: client.casUrl.origin,
      mode: 'hardware',
      certificateSha256: certificateFingerprint(presented),
      pinnedAt: new Date().toISOString(),
      evidence: { teeType: result.teeType, tcbStatus: result.tcbStatus, advisoryIds: result.advisoryIds, measurements: { ...result.measurements } },
    };
  }
  if (evidenceType !== 'simulation') {
    throw new CasError('EVIDENCE_INVALID', `the CAS at ${client.casUrl.origin} sent evidence of type "${String(evidenceType)}", which this client cannot verify`);
  }
  if (!options.acceptSimulation) {
    throw new CasError(
      'SIMULATION_NOT_ALLOWED',
      `the CAS at ${client.casUrl.origin} runs in simulation mode: its evidence is signed by a platform key kept in a file and proves nothing about the code it runs; to pin it anyway (development and tests only), run: cas attest --cas ${client.casUrl.origin} --accept-simulation`,
    );
  }
  verifySimulatedEvidence(response.evidence, { purpose: 'cas-certificate', nonce, boundData: presented });

  const certificatePem = new X509Certificate(presented).toString();
  writePinnedCertificate(client.casUrl, certificatePem, home);
  return {
    url: client.casUrl.origin,
    mode: 'simulation',
    certificateSha256: certificateFingerprint(presented),
    pinnedAt: new Date().toISOString(),
  };
}
