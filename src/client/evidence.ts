import { reportDataFor } from '../attestation/binding.js';
import { ConfigfsTsmSource, CONFIGFS_TSM_REPORT_PATH } from '../attestation/sources/configfs-tsm.js';
import { detectEvidenceSource } from '../attestation/sources/detect.js';
import type { EvidenceSource } from '../attestation/sources/evidence-source.js';
import { GramineSource, GRAMINE_ATTESTATION_PATH } from '../attestation/sources/gramine.js';
import { CasError } from '../errors/cas-error.js';
import { hardwareEvidence, nonceBytes } from '../server/evidence/hardware.js';
import { createSimulatedEvidence } from '../server/evidence/simulation.js';
import { openPlatform } from '../store/index.js';

export const EVIDENCE_SOURCE_CHOICES = ['auto', 'configfs-tsm', 'gramine', 'simulation'] as const;
export type EvidenceSourceChoice = (typeof EVIDENCE_SOURCE_CHOICES)[number];

export interface ServiceEvidenceOptions {
  /** `auto` picks Gramine, then configfs-tsm, then simulation; the others force one source. */
  source: EvidenceSourceChoice;
  /** Directory of this machine's platform key, which signs simulated evidence. */
  platformDir: string;
  /** configfs-tsm report directory (default /sys/kernel/config/tsm/report). */
  configfsTsmPath?: string;
  /** Use this existing configfs-tsm entry instead of creating one (containers with a bound-in entry). */
  configfsTsmEntry?: string;
  /** Gramine's attestation directory (default /dev/attestation). */
  gramineAttestationPath?: string;
}

export interface ServiceEvidence {
  /** The evidence object for `POST /v1/configuration`. */
  evidence: Record<string, unknown>;
  /** Source of the evidence; `simulation` evidence proves nothing. */
  source: 'configfs-tsm' | 'gramine' | 'simulation';
  /** True when `auto` found no TEE interface and fell back to simulation. */
  fellBack: boolean;
}

/**
 * Produces a service's evidence for a CAS nonce and the service's TLS client key (SPKI DER). Hardware
 * evidence carries `reportDataFor(nonce bytes, spkiDer)` as its report data, the binding that CAS checks;
 * simulated evidence signs the same nonce and key with the platform key.
 */
export async function collectServiceEvidence(options: ServiceEvidenceOptions, nonce: string, spkiDer: Buffer): Promise<ServiceEvidence> {
  const source = await chooseSource(options);
  if (source === undefined) {
    const platform = await openPlatform({ mode: 'simulation', platformDir: options.platformDir });
    return { evidence: { ...createSimulatedEvidence(platform, 'service-key', nonce, spkiDer) }, source: 'simulation', fellBack: options.source === 'auto' };
  }
  const collected = await source.collect(reportDataFor(nonceBytes(nonce), spkiDer));
  return { evidence: { ...hardwareEvidence(collected.teeType, collected.evidence) }, source: source.kind, fellBack: false };
}

async function chooseSource(options: ServiceEvidenceOptions): Promise<EvidenceSource | undefined> {
  const tsmPath = options.configfsTsmPath ?? CONFIGFS_TSM_REPORT_PATH;
  const configfs = (): ConfigfsTsmSource =>
    new ConfigfsTsmSource({ basePath: tsmPath, ...(options.configfsTsmEntry === undefined ? {} : { entryName: options.configfsTsmEntry }) });
  switch (options.source) {
    case 'simulation':
      return undefined;
    case 'gramine':
      return new GramineSource(options.gramineAttestationPath ?? GRAMINE_ATTESTATION_PATH);
    case 'configfs-tsm':
      return configfs();
    case 'auto': {
      const detected = await detectEvidenceSource({ configfsTsmPath: tsmPath, gramineAttestationPath: options.gramineAttestationPath ?? GRAMINE_ATTESTATION_PATH });
      // detectEvidenceSource takes no entry name, so the configfs-tsm source is built again with it.
      return detected?.kind === 'configfs-tsm' ? configfs() : detected;
    }
    default:
      throw new CasError('INVALID_ARGUMENT', `unknown evidence source "${String(options.source)}"; expected one of ${EVIDENCE_SOURCE_CHOICES.join(', ')}`);
  }
}

/** Parses the `--evidence-source` flag. */
export function parseEvidenceSource(text: string | undefined): EvidenceSourceChoice {
  const value = text ?? 'auto';
  if (!(EVIDENCE_SOURCE_CHOICES as readonly string[]).includes(value)) {
    throw new CasError('INVALID_ARGUMENT', `--evidence-source must be one of ${EVIDENCE_SOURCE_CHOICES.join(', ')}, not "${value}"`);
  }
  return value as EvidenceSourceChoice;
}
