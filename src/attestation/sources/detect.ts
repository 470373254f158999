import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigfsTsmSource, CONFIGFS_TSM_REPORT_PATH } from './configfs-tsm.js';
import type { EvidenceSource } from './evidence-source.js';
import { attestationType, GramineSource, GRAMINE_ATTESTATION_PATH } from './gramine.js';

export interface DetectOptions {
  configfsTsmPath?: string;
  gramineAttestationPath?: string;
}

/**
 * Picks the evidence source of this machine: Gramine's /dev/attestation when it offers DCAP quotes (an
 * SGX enclave), else configfs-tsm when its report directory exists (a TDX or SEV-SNP guest). Returns
 * undefined when neither is present; simulated evidence is then the caller's decision.
 */
export async function detectEvidenceSource(options: DetectOptions = {}): Promise<EvidenceSource | undefined> {
  const gramine = options.gramineAttestationPath ?? GRAMINE_ATTESTATION_PATH;
  if ((await exists(join(gramine, 'quote'))) && (await exists(join(gramine, 'user_report_data')))) {
    const type = await attestationType(gramine);
    if (type === undefined || type === 'dcap') return new GramineSource(gramine);
  }
  const tsm = options.configfsTsmPath ?? CONFIGFS_TSM_REPORT_PATH;
  if (await isDirectory(tsm)) return new ConfigfsTsmSource({ basePath: tsm });
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
