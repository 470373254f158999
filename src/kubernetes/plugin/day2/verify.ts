import { AppsV1Api } from '@kubernetes/client-node';
import { isNotFound, kubeApiError } from '../../cluster/api-errors.js';
import { objectNames } from '../../manifests/names.js';
import type { CasStatus } from '../../../status/status-types.js';
import { attestDeployedCas, readStatus, type AttestedCas } from './deployed-cas.js';
import { requireDeployment, withDeployedCas, type Day2Target } from './inspect-verbs.js';

export type CheckResult = 'ok' | 'warn' | 'fail';

export interface VerifyCheck {
  check: 'deployment' | 'attestation' | 'health' | 'owner' | 'backups' | 'snapshot';
  result: CheckResult;
  detail: string;
}

/**
 * A snapshot older than this many snapshot intervals fails verification. Snapshots are skipped while the
 * database does not change, so an idle CAS has an old newest snapshot; that is a warning, not a failure.
 */
const SNAPSHOT_AGE_INTERVALS = 3;

/**
 * `--verify`: attests the deployed CAS and checks that it is healthy, that other nodes are registered as
 * backup targets, and that its newest snapshot is recent. Returns one result per check; the caller exits
 * non-zero when any check failed.
 */
export async function verifyDeployment(target: Day2Target): Promise<VerifyCheck[]> {
  const checks: VerifyCheck[] = [];
  const deployment = await requireDeployment(target);
  checks.push(
    deployment.readyReplicas >= 1
      ? { check: 'deployment', result: 'ok', detail: `statefulset "${target.name}": ${deployment.readyReplicas} ready, ${deployment.mode} mode` }
      : { check: 'deployment', result: 'fail', detail: `statefulset "${target.name}" has no ready pod` },
  );

  // Attestation and status are read first, with retries on a reset connection; the checks follow.
  let observed: { attested: AttestedCas; status: CasStatus | undefined; serviceUrl: string };
  try {
    observed = await withDeployedCas(target, async (cas) => {
      const attested = await attestDeployedCas(cas, deployment.mode);
      const status = attested.matchesPin === false ? undefined : await readStatus(cas.trusting(attested.certificatePem));
      return { attested, status, serviceUrl: cas.serviceUrl };
    });
  } catch (error) {
    checks.push({ check: 'attestation', result: 'fail', detail: error instanceof Error ? error.message : String(error) });
    return checks;
  }

  const { attested, status } = observed;
  const simulated = attested.mode === 'simulation' ? ' (simulated evidence: proves nothing about the code)' : '';
  if (attested.matchesPin === false || status === undefined) {
    checks.push({ check: 'attestation', result: 'fail', detail: `evidence binds certificate sha256 ${attested.certificateSha256}, but CAS_HOME pins another certificate for ${observed.serviceUrl}` });
    return checks;
  }
  checks.push({
    check: 'attestation',
    result: attested.matchesPin === true ? 'ok' : 'warn',
    detail: `evidence verified for certificate sha256 ${attested.certificateSha256}${attested.matchesPin === true ? ', equal to the pinned certificate' : ', but CAS_HOME has no pin for it'}${simulated}`,
  });

  checks.push(
    status.health === 'ready' && status.role === 'primary'
      ? { check: 'health', result: 'ok', detail: `primary, ready, version ${status.version ?? 'unknown'}` }
      : { check: 'health', result: 'fail', detail: `role ${status.role}, health ${status.health ?? 'unknown'}` },
  );
  const owner = status.owner;
  if (owner === undefined) {
    checks.push({ check: 'owner', result: 'fail', detail: 'the client identity in CAS_HOME is not the CAS owner, so backups and snapshots cannot be checked' });
    return checks;
  }

  const backups = owner.backupPlatforms.filter((entry) => !entry.thisInstance);
  const daemonSet = await backupDaemonSetLine(target);
  checks.push(
    backups.length > 0
      ? { check: 'backups', result: 'ok', detail: `${backups.length} backup platform(s) registered besides the primary; ${daemonSet}` }
      : { check: 'backups', result: 'fail', detail: `no backup platform is registered besides the primary, so no other node can open the database; ${daemonSet}` },
  );

  const snapshots = owner.snapshots;
  const limitSeconds = SNAPSHOT_AGE_INTERVALS * deployment.snapshotIntervalSeconds;
  if (!snapshots.enabled) {
    checks.push({ check: 'snapshot', result: 'fail', detail: 'snapshots are disabled' });
  } else if (snapshots.lastAttempt?.result === 'failure') {
    checks.push({ check: 'snapshot', result: 'fail', detail: `the last snapshot attempt failed: ${snapshots.lastAttempt.code}: ${snapshots.lastAttempt.message}` });
  } else if (snapshots.newest === null) {
    checks.push({ check: 'snapshot', result: 'fail', detail: 'no valid snapshot exists yet' });
  } else {
    const recent = snapshots.newest.ageSeconds <= limitSeconds;
    checks.push({
      check: 'snapshot',
      result: recent ? 'ok' : 'warn',
      detail: `newest ${snapshots.newest.name}, ${snapshots.newest.ageSeconds} s old${recent ? '' : ` (more than ${limitSeconds} s: no change since, or snapshots stopped)`}`,
    });
  }
  return checks;
}

async function backupDaemonSetLine(target: Day2Target): Promise<string> {
  const name = objectNames(target.name).backupDaemonSet;
  try {
    const daemonSet = await target.config.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ name, namespace: target.namespace });
    return `daemonset "${name}": ${daemonSet.status?.numberReady ?? 0} of ${daemonSet.status?.desiredNumberScheduled ?? 0} registration pods ready`;
  } catch (error) {
    if (isNotFound(error)) return `daemonset "${name}" not found (deployed with --no-backup?)`;
    return `daemonset "${name}": ${kubeApiError('reading the daemonset', error).message}`;
  }
}

/** Formats the checks as aligned lines: `ok    health  primary, ready, ...`. */
export function formatChecks(checks: VerifyCheck[]): string {
  return checks.map((entry) => `${entry.result.toUpperCase().padEnd(5)} ${entry.check.padEnd(12)} ${entry.detail}`).join('\n') + '\n';
}
