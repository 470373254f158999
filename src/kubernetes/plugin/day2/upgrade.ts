import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, type V1DaemonSet } from '@kubernetes/client-node';
import { sendRequest } from '../../../client/transport.js';
import { CasError } from '../../../errors/cas-error.js';
import { resourceLabel, applyObjects } from '../../cluster/apply.js';
import { isNotFound, kubeApiError } from '../../cluster/api-errors.js';
import { waitForPrimary } from '../../cluster/rollout.js';
import type { KubeObject } from '../../manifests/index.js';
import { objectNames } from '../../manifests/names.js';
import { DEFAULT_IMAGE_REPOSITORY } from '../../manifests/options.js';
import { attestDeployedCas, readStatus } from './deployed-cas.js';
import { requireDeployment, withDeployedCas, type Day2Target } from './inspect-verbs.js';
import { verifyDeployment } from './verify.js';

const POLL_INTERVAL_MS = 1000;

/** CAS state that the upgrade compares before and after rolling the primary. */
interface DurableState {
  certificateSha256: string;
  auditSeq: number;
  snapshots: string[];
}

export interface UpgradeResult {
  image: string;
  steps: string[];
  before: DurableState;
  after: DurableState;
}

/** Turns `--upgrade VERSION` into an image: a bare version is a tag of the default repository. */
export function upgradeImage(version: string): string {
  if (version.includes('/') || version.includes(':') || version.includes('@')) return version;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(version)) {
    throw new CasError('INVALID_ARGUMENT', `invalid --upgrade "${version}": expected an image tag such as 0.2.0, or a whole image reference`);
  }
  return `${DEFAULT_IMAGE_REPOSITORY}:${version}`;
}

/**
 * `--upgrade VERSION`: rolls a healthy CAS to a new image in the order that keeps it recoverable.
 *
 * 1. Verify the deployment; any failed check stops the upgrade before anything changes.
 * 2. Record the CAS identity, audit head and snapshot list.
 * 3. Apply the backup DaemonSet with the new image and wait until every node's registration pod runs it,
 *    so each backup target is registered by the new version before the primary changes.
 * 4. Apply the StatefulSet with the new image and wait for the primary's rollout.
 * 5. Attest again and compare: the same CAS identity, an audit head at or after the recorded one, and every
 *    recorded snapshot still listed. The claims are never touched, so a failure here means that the new
 *    version misread the data. The old snapshots and audit log stay on their claims for a rollback.
 *
 * `objects` are the manifests rendered from the same flags with the new image, as on any re-run.
 */
export async function upgradeDeployment(target: Day2Target, objects: KubeObject[], image: string, timeoutMs: number): Promise<UpgradeResult> {
  const steps: string[] = [];
  const step = (line: string): void => {
    steps.push(line);
    target.say(line);
  };

  const checks = await verifyDeployment(target);
  const failed = checks.filter((entry) => entry.result === 'fail');
  if (failed.length > 0) {
    throw new CasError('UNAVAILABLE', `CAS "${target.name}" is not healthy, so it is not upgraded: ${failed.map((entry) => `${entry.check}: ${entry.detail}`).join('; ')}`);
  }
  step(`verified CAS "${target.name}": ${checks.map((entry) => `${entry.check} ${entry.result}`).join(', ')}`);

  const before = await readDurableState(target);
  step(`recorded certificate sha256 ${before.certificateSha256}, audit head seq ${before.auditSeq}, ${before.snapshots.length} snapshot(s)`);

  const names = objectNames(target.name);
  const daemonSet = objects.find((object) => object.kind === 'DaemonSet' && object.metadata?.name === names.backupDaemonSet);
  if (daemonSet !== undefined) {
    await applyObjects(target.config, [daemonSet], (object) => step(`${resourceLabel(object)} serverside-applied with image ${image}`));
    await waitForDaemonSet(target, names.backupDaemonSet, timeoutMs, step);
  } else {
    step('no backup DaemonSet (--no-backup): no backup target to register with the new image');
  }

  const statefulSet = objects.find((object) => object.kind === 'StatefulSet' && object.metadata?.name === names.statefulSet);
  if (statefulSet === undefined) throw new CasError('INTERNAL', `the rendered manifests have no statefulset "${names.statefulSet}"`);
  await applyObjects(target.config, [statefulSet], (object) => step(`${resourceLabel(object)} serverside-applied with image ${image}`));
  await waitForPrimary(target.config, target.namespace, target.name, timeoutMs, step);

  const after = await readDurableState(target);
  if (after.certificateSha256 !== before.certificateSha256) {
    throw new CasError('SERVER_CERT_MISMATCH', `after the upgrade the CAS presents certificate sha256 ${after.certificateSha256} instead of ${before.certificateSha256}: it did not open the old database; the old data is unchanged on its claims`);
  }
  if (after.auditSeq < before.auditSeq) {
    throw new CasError('AUDIT_TRUNCATED', `after the upgrade the audit head is seq ${after.auditSeq}, behind seq ${before.auditSeq} before it`);
  }
  const missing = before.snapshots.filter((name) => !after.snapshots.includes(name));
  if (missing.length > 0) {
    throw new CasError('SNAPSHOT_INVALID', `after the upgrade these snapshots are missing: ${missing.join(', ')}`);
  }
  step(`upgraded CAS "${target.name}" to ${image}: same identity, audit head seq ${after.auditSeq} (was ${before.auditSeq}), all ${before.snapshots.length} snapshot(s) kept`);
  return { image, steps, before, after };
}

async function readDurableState(target: Day2Target): Promise<DurableState> {
  const deployment = await requireDeployment(target);
  return withDeployedCas(target, async (cas) => {
    const attested = await attestDeployedCas(cas, deployment.mode);
    if (attested.matchesPin === false) {
      throw new CasError('SERVER_CERT_MISMATCH', `the CAS presents certificate sha256 ${attested.certificateSha256}, not the one pinned for ${cas.serviceUrl}`);
    }
    const status = await readStatus(cas.trusting(attested.certificatePem));
    if (status.owner === undefined) throw new CasError('PERMISSION_DENIED', 'the client identity in CAS_HOME is not the CAS owner, so it cannot check the audit head and snapshots around an upgrade');
    const listing = (await sendRequest(cas.transport(attested.certificatePem), 'GET', '/v1/snapshots')).body as { snapshots: Array<{ name: string; status: string }> };
    return {
      certificateSha256: attested.certificateSha256,
      auditSeq: status.owner.audit.seq,
      snapshots: listing.snapshots.filter((entry) => entry.status === 'valid').map((entry) => entry.name),
    };
  });
}

/** Polls the DaemonSet until every scheduled pod runs the applied generation and is ready; throws TIMEOUT. */
async function waitForDaemonSet(target: Day2Target, name: string, timeoutMs: number, progress: (line: string) => void): Promise<void> {
  const apps = target.config.makeApiClient(AppsV1Api);
  const deadline = Date.now() + timeoutMs;
  let lastMessage = '';
  for (;;) {
    let daemonSet: V1DaemonSet;
    try {
      daemonSet = await apps.readNamespacedDaemonSet({ name, namespace: target.namespace });
    } catch (error) {
      if (isNotFound(error)) throw new CasError('NOT_FOUND', `daemonset "${name}" disappeared during the upgrade`);
      throw kubeApiError(`reading daemonset "${name}"`, error);
    }
    const generation = daemonSet.metadata?.generation ?? 0;
    const status = daemonSet.status;
    const desired = status?.desiredNumberScheduled ?? 0;
    const updated = status?.updatedNumberScheduled ?? 0;
    const ready = status?.numberReady ?? 0;
    const observed = (status?.observedGeneration ?? 0) >= generation;
    const done = observed && updated >= desired && ready >= desired;
    const message = done
      ? `daemonset "${name}": ${ready} of ${desired} backup registration pods run the new image`
      : `Waiting for daemonset "${name}" rollout: ${observed ? `${updated} of ${desired} updated, ${ready} ready` : 'spec update not observed yet'}...`;
    if (message !== lastMessage) {
      progress(message);
      lastMessage = message;
    }
    if (done) return;
    if (Date.now() >= deadline) {
      throw new CasError('TIMEOUT', `timed out after ${Math.round(timeoutMs / 1000)}s waiting for daemonset "${name}" to run the new image on every node; the primary was not changed`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}
