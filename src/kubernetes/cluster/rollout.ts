import { AppsV1Api, CoreV1Api, type KubeConfig, type V1StatefulSet } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { CasError } from '../../errors/cas-error.js';
import { CONTAINER_NAMES, objectNames } from '../manifests/names.js';
import { isNotFound, kubeApiError } from './api-errors.js';

const POLL_INTERVAL_MS = 1000;
const LOG_TAIL_LINES = 20;

/** Returns the rollout state of a StatefulSet in kubectl's words, and whether it is complete. */
export function statefulSetRolloutState(statefulSet: V1StatefulSet): { done: boolean; message: string } {
  const name = statefulSet.metadata?.name ?? '';
  const generation = statefulSet.metadata?.generation ?? 0;
  const status = statefulSet.status;
  const replicas = statefulSet.spec?.replicas ?? 1;
  if (status === undefined || (status.observedGeneration ?? 0) < generation) {
    return { done: false, message: `Waiting for statefulset "${name}" spec update to be observed...` };
  }
  const ready = status.readyReplicas ?? 0;
  if (ready < replicas) {
    return { done: false, message: `Waiting for statefulset "${name}": ${ready} of ${replicas} pods ready...` };
  }
  if (status.updateRevision !== undefined && status.currentRevision !== status.updateRevision) {
    const updated = status.updatedReplicas ?? 0;
    return { done: false, message: `Waiting for statefulset "${name}" rolling update: ${updated} of ${replicas} pods updated...` };
  }
  return { done: true, message: `statefulset "${name}" rolling update complete: ${ready} pods at revision ${status.currentRevision ?? 'unknown'}` };
}

/**
 * Polls the primary's StatefulSet until its pod is ready, printing each new state once. On timeout, prints
 * the pod's events and last log lines and throws TIMEOUT.
 */
export async function waitForPrimary(
  config: KubeConfig,
  namespace: string,
  name: string,
  timeoutMs: number,
  progress: (line: string) => void,
): Promise<void> {
  const apps = config.makeApiClient(AppsV1Api);
  const deadline = Date.now() + timeoutMs;
  let lastMessage = '';
  for (;;) {
    let statefulSet: V1StatefulSet;
    try {
      statefulSet = await apps.readNamespacedStatefulSet({ name, namespace });
    } catch (error) {
      throw kubeApiError(`reading statefulset "${name}"`, error);
    }
    const state = statefulSetRolloutState(statefulSet);
    if (state.message !== lastMessage) {
      progress(state.message);
      lastMessage = state.message;
    }
    if (state.done) return;

    if (Date.now() >= deadline) {
      progress(await describeFailure(config, namespace, name));
      throw new CasError('TIMEOUT', `timed out after ${Math.round(timeoutMs / 1000)}s waiting for statefulset "${name}" in namespace "${namespace}" to become ready; the pod's events and last log lines are above`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Events of the primary's pod and StatefulSet, and the last log lines of the CAS container. */
export async function describeFailure(config: KubeConfig, namespace: string, name: string): Promise<string> {
  const core = config.makeApiClient(CoreV1Api);
  const podName = objectNames(name).primaryPod;
  const lines: string[] = [`Events of pod "${podName}" and statefulset "${name}":`];

  for (const objectName of [podName, name]) {
    try {
      const events = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${objectName}` });
      for (const event of events.items) {
        const kind = event.involvedObject.kind ?? '';
        lines.push(`  ${event.type ?? ''} ${event.reason ?? ''} ${kind}/${objectName}: ${event.message ?? ''}`.trimEnd());
      }
    } catch (error) {
      lines.push(`  events of ${objectName} unavailable: ${kubeApiError('listing events', error).message}`);
    }
  }
  if (lines.length === 1) lines.push('  (none)');

  lines.push(`Last ${LOG_TAIL_LINES} log lines of container "${CONTAINER_NAMES.server}" in pod "${podName}":`);
  try {
    const log = await core.readNamespacedPodLog({ name: podName, namespace, container: CONTAINER_NAMES.server, tailLines: LOG_TAIL_LINES });
    const logLines = log.split('\n').filter((line) => line.length > 0);
    lines.push(...(logLines.length === 0 ? ['  (empty)'] : logLines.map((line) => `  ${line}`)));
  } catch (error) {
    lines.push(isNotFound(error) ? `  (pod "${podName}" not found)` : `  (unavailable: ${kubeApiError('reading the log', error).message})`);
  }
  return lines.join('\n');
}

/** Returns one line on the backup registration pods, which the plugin reports but does not wait for. */
export async function backupStatusLine(config: KubeConfig, namespace: string, name: string): Promise<string> {
  const apps = config.makeApiClient(AppsV1Api);
  const daemonSetName = objectNames(name).backupDaemonSet;
  try {
    const daemonSet = await apps.readNamespacedDaemonSet({ name: daemonSetName, namespace });
    const desired = daemonSet.status?.desiredNumberScheduled ?? 0;
    const ready = daemonSet.status?.numberReady ?? 0;
    return `daemonset.apps/${daemonSetName}: ${ready} of ${desired} nodes registered as backup targets (registration continues in the background)`;
  } catch (error) {
    return `daemonset.apps/${daemonSetName}: status unavailable (${kubeApiError('reading the daemonset', error).message})`;
  }
}
