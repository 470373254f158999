import { reportDataFor } from '../../attestation/binding.js';
import { detectEvidenceSource, type DetectOptions } from '../../attestation/sources/detect.js';
import { CasError } from '../../errors/cas-error.js';
import { hardwareEvidence, nonceBytes, type HardwareEvidence } from './hardware.js';

/**
 * Collects the evidence of a hardware-mode CAS for `POST /v1/attestation`: a quote or report from this
 * machine's TEE whose report data is `reportDataFor(nonce bytes, DER of the CAS certificate)`, which
 * `cas attest` checks before it pins the certificate.
 *
 * NOTE: never run on TEE hardware. A hardware-mode CAS cannot start on the test machines, so the route
 * has never called this. It is tested only on a Gramine-like layout of ordinary files.
 */
export async function collectCasEvidence(nonce: string, certificateDer: Buffer, sources: DetectOptions = {}): Promise<HardwareEvidence> {
  const source = await detectEvidenceSource(sources);
  if (source === undefined) {
    throw new CasError('UNAVAILABLE', 'this CAS runs in hardware mode but found no TEE evidence source (Gramine /dev/attestation, configfs-tsm); run it inside an SGX enclave, a TDX TD or an SEV-SNP guest');
  }
  const collected = await source.collect(reportDataFor(nonceBytes(nonce), certificateDer));
  return hardwareEvidence(collected.teeType, collected.evidence);
}
