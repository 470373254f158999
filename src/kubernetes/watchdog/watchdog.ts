import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api, CoreV1Api, type KubeConfig, type V1Node, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../logging/logger.js';
import { apiStatus, kubeApiError } from '../cluster/api-errors.js';
import { decideFailover, type ObservedLease, type ObservedNode, type ObservedPod, type WatchdogDecision, type WatchdogObservation, type WatchdogPolicy } from './decide.js';

export interface WatchdogOptions extends WatchdogPolicy {
  config: KubeConfig;
  namespace: string;
  /** Name of the primary pod (`<statefulset>-0`). */
  podName: string;
  /** Name of the primary Lease that `cas serve --lease kubernetes` renews. */
  leaseName: string;
  /** Seconds between two observations. */
  intervalSeconds: number;
  logger: Logger;
  /** Monotonic milliseconds, for measuring how long the Lease stayed unchanged; injectable for tests. */
  monotonicNow?: () => number;
  /** Wall clock, compared with the node's condition timestamps. */
  now?: () => Date;
}

/**
 * The failover watchdog's loop: reads the primary pod, its node and the primary Lease, passes them to
 * `decideFailover`, and deletes the pod when the decision is `delete-pod`. The deletion uses grace period 0, because the
 * kubelet of a NotReady node cannot confirm a graceful one, and a uid precondition, so a pod that the
 * StatefulSet already recreated under the same name is never deleted by a stale decision.
 *
 * API verbs used (the watchdog's RBAC): get nodes, get and delete pods, get leases.
 */
export class FailoverWatchdog {
  private readonly core: CoreV1Api;
  private readonly coordination: CoordinationV1Api;
  private readonly monotonicNow: () => number;
  private readonly now: () => Date;
  private leaseSeen: { resourceVersion: string; since: number } | undefined;
  private lastReason: string | undefined;

  constructor(private readonly options: WatchdogOptions) {
    this.core = options.config.makeApiClient(CoreV1Api);
    this.coordination = options.config.makeApiClient(CoordinationV1Api);
    this.monotonicNow = options.monotonicNow ?? (() => performance.now());
    this.now = options.now ?? (() => new Date());
  }

  /** Makes one observation and acts on the decision; returns the decision. */
  async tick(): Promise<WatchdogDecision> {
    const decision = decideFailover(await this.observe(), this.options);
    await this.act(decision);
    return decision;
  }

  /** Reads the primary pod, its node and the primary Lease. */
  async observe(): Promise<WatchdogObservation> {
    const pod = await this.readPod();
    const node = pod?.nodeName === undefined ? undefined : await this.readNode(pod.nodeName);
    const lease = await this.readLease();
    return { now: this.now(), pod, node, lease };
  }

  /** Logs a wait, or deletes the pod named by a delete decision (only if it still has the decided uid). */
  async act(decision: WatchdogDecision): Promise<void> {
    const { namespace, podName, logger } = this.options;
    if (decision.action === 'wait') {
      if (decision.reason !== this.lastReason) logger.info({ pod: podName, namespace, reason: decision.reason }, 'failover watchdog waits');
      this.lastReason = decision.reason;
      return;
    }
    this.lastReason = undefined;
    logger.warn({ pod: decision.pod, uid: decision.uid, node: decision.node, namespace, reason: decision.reason }, 'deleting the primary pod so that the StatefulSet recreates it on another node');
    try {
      await this.core.deleteNamespacedPod({
        name: decision.pod,
        namespace,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid: decision.uid } },
      });
    } catch (error) {
      const status = apiStatus(error);
      // 404: already gone; 409: the uid precondition failed because the pod was recreated meanwhile.
      if (status === 404 || status === 409) {
        logger.info({ pod: decision.pod, status }, 'the primary pod was already deleted or replaced');
        return;
      }
      throw kubeApiError(`Deleting pod ${namespace}/${decision.pod}`, error);
    }
    logger.warn({ pod: decision.pod, node: decision.node, namespace }, 'deleted the primary pod');
  }

  /** Runs `tick` every interval until `signal` aborts; errors of one tick are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    this.options.logger.info(
      { namespace: this.options.namespace, pod: this.options.podName, lease: this.options.leaseName, notReadyDelaySeconds: this.options.notReadyDelaySeconds },
      'failover watchdog started',
    );
    while (!signal.aborted) {
      try {
        await this.tick();
      } catch (error) {
        this.options.logger.error({ err: error }, 'failover watchdog observation failed; retrying');
      }
      try {
        await sleep(this.options.intervalSeconds * 1000, undefined, { signal });
      } catch {
        break;
      }
    }
    this.options.logger.info('failover watchdog stopped');
  }

  private async readPod(): Promise<ObservedPod | undefined> {
    let pod: V1Pod;
    try {
      pod = await this.core.readNamespacedPod({ name: this.options.podName, namespace: this.options.namespace });
    } catch (error) {
      if (apiStatus(error) === 404) return undefined;
      throw kubeApiError(`Reading pod ${this.options.namespace}/${this.options.podName}`, error);
    }
    return {
      name: pod.metadata?.name ?? this.options.podName,
      uid: pod.metadata?.uid ?? '',
      nodeName: pod.spec?.nodeName,
      deletionTimestamp: toDate(pod.metadata?.deletionTimestamp),
    };
  }

  private async readNode(name: string): Promise<ObservedNode | undefined> {
    let node: V1Node;
    try {
      node = await this.core.readNode({ name });
    } catch (error) {
      if (apiStatus(error) === 404) return undefined;
      throw kubeApiError(`Reading node ${name}`, error);
    }
    const ready = node.status?.conditions?.find((condition) => condition.type === 'Ready');
    const status = ready?.status;
    return {
      name,
      ready: status === 'True' || status === 'False' || status === 'Unknown' ? status : undefined,
      readyTransitionTime: toDate(ready?.lastTransitionTime),
    };
  }

  private async readLease(): Promise<ObservedLease | undefined> {
    let lease;
    try {
      lease = await this.coordination.readNamespacedLease({ name: this.options.leaseName, namespace: this.options.namespace });
    } catch (error) {
      if (apiStatus(error) === 404) {
        this.leaseSeen = undefined;
        return undefined;
      }
      throw kubeApiError(`Reading Lease ${this.options.namespace}/${this.options.leaseName}`, error);
    }
    const resourceVersion = lease.metadata?.resourceVersion ?? '';
    const now = this.monotonicNow();
    let unchangedForSeconds: number | undefined;
    if (this.leaseSeen === undefined || this.leaseSeen.resourceVersion !== resourceVersion) {
      this.leaseSeen = { resourceVersion, since: now };
    } else {
      unchangedForSeconds = (now - this.leaseSeen.since) / 1000;
    }
    return {
      holderIdentity: lease.spec?.holderIdentity,
      leaseDurationSeconds: lease.spec?.leaseDurationSeconds ?? 15,
      unchangedForSeconds,
    };
  }
}

function toDate(value: unknown): Date | undefined {
  if (value instanceof Date) return value;
  if (typeof value === 'string' && value !== '') {
    const parsed = new Date(value);
    return Number.isNaN(parsed.getTime()) ? undefined : parsed;
  }
  return undefined;
}
