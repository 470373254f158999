import { sendRequest } from '../../../client/transport.js';
import { DEPLOYMENT_PATHS } from '../../../config/defaults.js';
import { CasError } from '../../../errors/cas-error.js';
import { parseSnapshotName } from '../../../snapshots/names.js';
import { applyObjects, resourceLabel } from '../../cluster/apply.js';
import { waitForPrimary } from '../../cluster/rollout.js';
import type { KubeObject } from '../../manifests/index.js';
import { objectNames } from '../../manifests/names.js';
import { attestDeployedCas, readStatus } from './deployed-cas.js';
import { requireDeployment, withDeployedCas, type Day2Target } from './inspect-verbs.js';

export interface RecoveryResult {
  snapshot: string;
  snapshotCreatedAt: string;
  /** Age of the restored state when the CAS started from it: changes of this many seconds are lost. */
  restoredAgeSeconds: number;
  auditSeq: number;
  steps: string[];
}

/**
 * `--cas-database-recovery SNAPSHOT`: starts the primary from the named snapshot on its snapshot claim.
 *
 * 1. When the CAS responds, check that the snapshot is listed and valid. An unreachable CAS is the usual
 *    reason to recover, so then the check is left to `cas serve`, which verifies the snapshot with its
 *    platform key before it replaces anything.
 * 2. Apply the StatefulSet with `--cas-database-recovery` and wait for the primary: the pod restores the
 *    snapshot (the replaced database is moved aside, never deleted) and records the restore in the audit log.
 * 3. Apply the StatefulSet without the flag and wait again, so a later pod restart does not restore the
 *    snapshot a second time and discard the changes made since.
 */
export async function recoverDeployment(target: Day2Target, objects: KubeObject[], snapshot: string, timeoutMs: number): Promise<RecoveryResult> {
  const createdAt = parseSnapshotName(snapshot);
  if (createdAt === undefined) {
    throw new CasError('INVALID_ARGUMENT', `invalid --cas-database-recovery "${snapshot}": expected the name of a snapshot directory, such as snapshot-20260101T000000.000Z (see kubectl provision cas NAME --local-backup or cas status)`);
  }
  const steps: string[] = [];
  const step = (line: string): void => {
    steps.push(line);
    target.say(line);
  };

  const deployment = await requireDeployment(target);
  const listed = await listSnapshots(target, deployment.mode).catch((error: unknown) => {
    step(`warning: cannot list the snapshots of the running CAS (${error instanceof Error ? error.message : String(error)}); cas serve verifies ${snapshot} before restoring it`);
    return undefined;
  });
  if (listed !== undefined) {
    const entry = listed.find((candidate) => candidate.name === snapshot);
    if (entry === undefined || entry.status !== 'valid') {
      throw new CasError('NOT_FOUND', `snapshot ${snapshot} is ${entry === undefined ? 'not on the snapshot claim' : `${entry.status}`}; valid snapshots: ${listed.filter((candidate) => candidate.status === 'valid').map((candidate) => candidate.name).join(', ') || 'none'}`);
    }
    step(`snapshot ${snapshot} is valid on the snapshot claim`);
  }

  const statefulSet = objects.find((object) => object.kind === 'StatefulSet' && object.metadata?.name === objectNames(target.name).statefulSet);
  if (statefulSet === undefined) throw new CasError('INTERNAL', `the rendered manifests have no statefulset "${target.name}"`);
  const recovering = withRecoveryArgument(statefulSet, `${DEPLOYMENT_PATHS.snapshotDir}/${snapshot}`);
  await applyObjects(target.config, [recovering], (object) => step(`${resourceLabel(object)} serverside-applied with --cas-database-recovery ${snapshot}`));
  await waitForPrimary(target.config, target.namespace, target.name, timeoutMs, step);
  const restoredAgeSeconds = Math.max(0, Math.round((Date.now() - createdAt.getTime()) / 1000));
  step(`the primary started from ${snapshot}, created ${createdAt.toISOString()}: the restored state is ${restoredAgeSeconds} s old, and changes made after it are lost`);

  await applyObjects(target.config, [statefulSet], (object) => step(`${resourceLabel(object)} serverside-applied without --cas-database-recovery`));
  await waitForPrimary(target.config, target.namespace, target.name, timeoutMs, step);

  const auditSeq = await withDeployedCas(target, async (cas) => {
    const attested = await attestDeployedCas(cas, deployment.mode);
    const status = await readStatus(cas.trusting(attested.certificatePem));
    if (status.owner === undefined) throw new CasError('PERMISSION_DENIED', 'the client identity in CAS_HOME is not the CAS owner, so the recovered CAS cannot be checked');
    return status.owner.audit.seq;
  });
  step(`CAS "${target.name}" serves the recovered database; audit head seq ${auditSeq}`);
  return { snapshot, snapshotCreatedAt: createdAt.toISOString(), restoredAgeSeconds, auditSeq, steps };
}

async function listSnapshots(target: Day2Target, mode: 'simulation' | 'hardware'): Promise<Array<{ name: string; status: string }>> {
  return withDeployedCas(target, async (cas) => {
    const attested = await attestDeployedCas(cas, mode);
    if (attested.matchesPin === false) throw new CasError('SERVER_CERT_MISMATCH', `the CAS presents certificate sha256 ${attested.certificateSha256}, not the pinned one`);
    return ((await sendRequest(cas.transport(attested.certificatePem), 'GET', '/v1/snapshots')).body as { snapshots: Array<{ name: string; status: string }> }).snapshots;
  });
}

/** Returns a copy of the StatefulSet whose CAS container also gets `--cas-database-recovery PATH`. */
function withRecoveryArgument(statefulSet: KubeObject, snapshotPath: string): KubeObject {
  const copy = structuredClone(statefulSet) as KubeObject & { spec: { template: { spec: { containers: Array<{ args?: string[] }> } } } };
  const container = copy.spec.template.spec.containers[0];
  if (container === undefined) throw new CasError('INTERNAL', 'the rendered statefulset has no container');
  container.args = [...(container.args ?? []), '--cas-database-recovery', snapshotPath];
  return copy;
}
