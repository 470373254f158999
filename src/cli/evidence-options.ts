import type { Command } from 'commander';
import { parseEvidenceSource, type ServiceEvidence, type ServiceEvidenceOptions } from '../client/evidence.js';

/** Flags of the commands that attest as a service (`cas run`, `cas config fetch`). */
export interface EvidenceFlags {
  evidenceSource?: string;
  configfsTsmPath?: string;
  configfsTsmEntry?: string;
  gramineAttestationPath?: string;
}

/** Adds `--evidence-source` and the path overrides of the evidence sources to a command. */
export function addEvidenceOptions(command: Command): Command {
  return command
    .option('--evidence-source <source>', 'auto (Gramine /dev/attestation, else configfs-tsm, else simulation), configfs-tsm, gramine or simulation', 'auto')
    .option('--configfs-tsm-path <dir>', 'configfs-tsm report directory (default /sys/kernel/config/tsm/report)')
    .option('--configfs-tsm-entry <name>', 'use this existing configfs-tsm entry instead of creating one')
    .option('--gramine-attestation-path <dir>', 'Gramine attestation directory (default /dev/attestation)');
}

/** Converts the flags into the evidence options of fetchConfiguration. */
export function evidenceOptions(flags: EvidenceFlags): Omit<ServiceEvidenceOptions, 'platformDir'> {
  return {
    source: parseEvidenceSource(flags.evidenceSource),
    ...(flags.configfsTsmPath === undefined ? {} : { configfsTsmPath: flags.configfsTsmPath }),
    ...(flags.configfsTsmEntry === undefined ? {} : { configfsTsmEntry: flags.configfsTsmEntry }),
    ...(flags.gramineAttestationPath === undefined ? {} : { gramineAttestationPath: flags.gramineAttestationPath }),
  };
}

/** Says on stderr when `auto` found no TEE and sent simulated evidence, which a hardware session refuses. */
export function reportEvidenceSource(evidence: ServiceEvidence): void {
  if (evidence.fellBack) {
    process.stderr.write('warning: no TEE evidence source found (/dev/attestation, configfs-tsm); sending simulated evidence, which only sessions with security.attestation.mode none accept\n');
  }
}
