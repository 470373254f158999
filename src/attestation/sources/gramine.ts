import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CasError } from '../../errors/cas-error.js';
import type { CollectedEvidence, EvidenceSource } from './evidence-source.js';

export const GRAMINE_ATTESTATION_PATH = '/dev/attestation';

/**
 * Collects SGX DCAP quotes inside a Gramine enclave through its pseudo-files: write the report data to
 * `user_report_data`, then read `quote`. `attestation_type` must be `dcap`; Gramine's EPID mode is not
 * supported.
 */
export class GramineSource implements EvidenceSource {
  readonly kind = 'gramine' as const;

  constructor(private readonly basePath: string = GRAMINE_ATTESTATION_PATH) {}

  async collect(reportData: Buffer): Promise<CollectedEvidence> {
    if (reportData.length !== 64) throw new CasError('INVALID_ARGUMENT', `report data must be 64 bytes, not ${reportData.length}`);
    const type = await attestationType(this.basePath);
    if (type !== undefined && type !== 'dcap') {
      throw new CasError('UNAVAILABLE', `Gramine attestation type is "${type}"; CAS needs "dcap" (set sgx.remote_attestation = "dcap" in the manifest)`);
    }
    try {
      await writeFile(join(this.basePath, 'user_report_data'), reportData);
      const evidence = await readFile(join(this.basePath, 'quote'));
      return { teeType: 'sgx', evidence };
    } catch (error) {
      throw new CasError('UNAVAILABLE', `collecting a quote through ${this.basePath} failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** Reads `attestation_type`, returning undefined when the file does not exist. */
export async function attestationType(basePath: string): Promise<string | undefined> {
  try {
    return (await readFile(join(basePath, 'attestation_type'), 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CasError('UNAVAILABLE', `reading ${join(basePath, 'attestation_type')} failed: ${(error as Error).message}`, { cause: error });
  }
}
