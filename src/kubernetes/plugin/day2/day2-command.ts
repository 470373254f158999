import type { Command } from 'commander';
import { CasError } from '../../../errors/cas-error.js';
import { loadKubeConfig, type KubeConfigFlags } from '../../cluster/kube-config.js';
import type { KubeObject } from '../../manifests/index.js';
import { DEFAULT_DCAP_API_KEY } from '../../manifests/options.js';
import { formatDocument, parseOutputFormat } from '../output.js';
import type { PluginIo } from '../provision-cas.js';
import { isProvisioned, readPublicKeys, type Day2Target } from './inspect-verbs.js';
import { parseDuration } from '../../cluster/duration.js';
import { downloadNewestSnapshot } from './local-backup.js';
import { recoverDeployment } from './recovery.js';
import { upgradeDeployment, upgradeImage } from './upgrade.js';
import { writeReport } from './report.js';
import { formatChecks, verifyDeployment } from './verify.js';

/** Flags of the day-2 verbs; each verb replaces the deploy-and-provision run. */
export interface Day2Flags {
  isProvisioned?: boolean;
  verify?: boolean;
  printPublicKeys?: boolean;
  report?: string;
  includeSecrets?: boolean;
  localBackup?: string;
  upgrade?: string;
  casDatabaseRecovery?: string;
}

const VERB_FLAGS = { isProvisioned: '--is-provisioned', verify: '--verify', printPublicKeys: '--print-public-keys', report: '--report', localBackup: '--local-backup', upgrade: '--upgrade', casDatabaseRecovery: '--cas-database-recovery' } as const;

/** Adds the day-2 verb flags to `kubectl provision cas`. */
export function addDay2Options(command: Command): Command {
  return command
    .option('--is-provisioned', 'exit 0 when the deployed CAS has an owner, 1 when it has none or is not deployed; deploys nothing')
    .option('--verify', 'attest the deployed CAS and check its health, backup targets and newest snapshot; exit 1 when a check fails')
    .option('--print-public-keys', 'attest the deployed CAS and print its identity key and audit key as PEM with their key hashes')
    .option('--report <FILE>', 'write a .tar.gz with the rendered manifests, object states, events and recent pod logs (Secret values redacted)')
    .option('--include-secrets', 'with --report: keep Secret values instead of redacting them')
    .option('--upgrade <VERSION>', 'roll a healthy CAS to image tag VERSION (or a whole image reference): backup registration pods first, then the primary; give the flags of the deployment as on any re-run')
    .option('--cas-database-recovery <DIR>', 'restart the primary from snapshot directory DIR (a name such as snapshot-20260101T000000.000Z) on the snapshot claim, then remove the flag again; changes after the snapshot are lost')
    .option('--local-backup <DIR>', 'copy the newest valid snapshot of the deployed CAS (manifest, database, key store) into DIR/SNAPSHOT and verify it');
}

/**
 * Runs the day-2 verb that `flags` selects and returns its exit code, or undefined when no verb is set
 * and the command deploys as usual.
 */
export async function runDay2Verb(
  name: string,
  flags: Day2Flags & { kubeconfig?: string; context?: string; namespace?: string; casUrl?: string; output?: string; dryRun?: boolean; dcapApi?: string; timeout?: string },
  io: PluginIo,
  renderManifests: (namespace: string, dcapApiKey: string, image?: string) => KubeObject[],
): Promise<number | undefined> {
  const selected = (Object.keys(VERB_FLAGS) as Array<keyof typeof VERB_FLAGS>).filter((key) => flags[key] !== undefined && flags[key] !== false);
  if (flags.includeSecrets === true && flags.report === undefined) {
    throw new CasError('INVALID_ARGUMENT', '--include-secrets works only with --report FILE');
  }
  if (selected.length === 0) return undefined;
  if (selected.length > 1) {
    throw new CasError('INVALID_ARGUMENT', `give one of ${selected.map((key) => VERB_FLAGS[key]).join(', ')}, not several`);
  }
  if (flags.dryRun === true) throw new CasError('INVALID_ARGUMENT', `${VERB_FLAGS[selected[0]!]} reads the cluster, so it cannot run with --dry-run`);

  const output = parseOutputFormat(flags.output);
  const kubeFlags: KubeConfigFlags = { kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace };
  const kube = loadKubeConfig(kubeFlags);
  const say = (line: string): void => void io.stderr.write(line + '\n');
  const target: Day2Target = { name, namespace: kube.namespace, config: kube.config, casUrl: flags.casUrl, say };
  const write = (document: unknown, text: string): void => void io.stdout.write(output === undefined ? text : formatDocument(document, output));

  switch (selected[0]!) {
    case 'isProvisioned': {
      const result = await isProvisioned(target);
      if (output !== undefined) write(result.document, '');
      return result.exitCode;
    }
    case 'printPublicKeys': {
      const keys = await readPublicKeys(target);
      if (!keys.certificatePinned) say(`warning: CAS_HOME has no pin for CAS "${name}"; the keys come from a CAS whose evidence was verified just now`);
      write(
        { name, namespace: kube.namespace, casIdentity: { keyHash: keys.cas.keyHash, publicKeyPem: keys.cas.publicKeyPem }, auditKey: { keyHash: keys.audit.keyHash, publicKeyPem: keys.audit.publicKeyPem } },
        `# CAS identity key, key sha256 ${keys.cas.keyHash}\n${keys.cas.publicKeyPem}# audit key, key sha256 ${keys.audit.keyHash}\n${keys.audit.publicKeyPem}`,
      );
      return 0;
    }
    case 'verify': {
      const checks = await verifyDeployment(target);
      const failed = checks.filter((entry) => entry.result === 'fail').length;
      write({ name, namespace: kube.namespace, passed: failed === 0, checks }, formatChecks(checks));
      say(failed === 0 ? `CAS "${name}" verified` : `CAS "${name}" failed ${failed} check(s)`);
      return failed === 0 ? 0 : 1;
    }
    case 'upgrade': {
      const image = upgradeImage(flags.upgrade!);
      const objects = renderManifests(kube.namespace, flags.dcapApi ?? DEFAULT_DCAP_API_KEY, image);
      const result = await upgradeDeployment(target, objects, image, parseDuration(flags.timeout ?? '5m'));
      if (output !== undefined) write(result, '');
      return 0;
    }
    case 'casDatabaseRecovery': {
      const objects = renderManifests(kube.namespace, flags.dcapApi ?? DEFAULT_DCAP_API_KEY);
      const result = await recoverDeployment(target, objects, flags.casDatabaseRecovery!, parseDuration(flags.timeout ?? '5m'));
      if (output !== undefined) write(result, '');
      return 0;
    }
    case 'localBackup': {
      const copied = await downloadNewestSnapshot(target, flags.localBackup!);
      say(`copied snapshot ${copied.snapshot} (created ${copied.createdAt}, ${copied.ageSeconds} s ago) to ${copied.path}; verified: ${copied.checks.join(', ')}`);
      if (output !== undefined) write(copied, '');
      return 0;
    }
    case 'report': {
      const written = await writeReport(target, {
        file: flags.report!,
        includeSecrets: flags.includeSecrets === true,
        renderManifests,
        dcapApiKey: flags.dcapApi ?? DEFAULT_DCAP_API_KEY,
      });
      say(`wrote ${written.file}: ${written.entries} files${flags.includeSecrets === true ? ' (Secret values INCLUDED: keep the file private)' : ', Secret values redacted'}`);
      if (output !== undefined) write({ file: written.file, entries: written.names, secretsIncluded: flags.includeSecrets === true }, '');
      return 0;
    }
  }
}
