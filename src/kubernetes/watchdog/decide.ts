/**
 * The failover watchdog's decision, as a pure function of what it observed: whether to delete the CAS
 * primary pod that is stuck on a NotReady node, so that the StatefulSet controller recreates it on another
 * node. It deletes only when both of these hold:
 *
 * 1. The pod's node has been NotReady (Ready condition False or Unknown) for at least `notReadyDelaySeconds`.
 * 2. The primary lease has expired. The watchdog measures expiry on its own clock as the time the Lease
 *    object stayed unchanged, as a standby does, so a skewed clock on the stuck node cannot shorten it.
 *
 * Deleting a pod whose container still runs on a partitioned node is the split-brain risk. The lease
 * bounds it, because a primary that cannot renew stops acknowledging writes before the lease expires.
 * The delay adds a margin for nodes that come back by themselves, at the cost of a longer failover.
 */

export interface ObservedNode {
  name: string;
  /** Status of the node's Ready condition; undefined when the node reports no Ready condition. */
  ready: 'True' | 'False' | 'Unknown' | undefined;
  /** When the Ready condition last changed, as the node controller recorded it. */
  readyTransitionTime: Date | undefined;
}

export interface ObservedPod {
  name: string;
  uid: string;
  nodeName: string | undefined;
  deletionTimestamp: Date | undefined;
}

export interface ObservedLease {
  holderIdentity: string | undefined;
  leaseDurationSeconds: number;
  /** Seconds the Lease object stayed unchanged, measured by the watchdog; undefined before two reads. */
  unchangedForSeconds: number | undefined;
}

export interface WatchdogObservation {
  now: Date;
  pod: ObservedPod | undefined;
  /** The pod's node; undefined when the pod is not scheduled or the node object is gone. */
  node: ObservedNode | undefined;
  lease: ObservedLease | undefined;
}

export interface WatchdogPolicy {
  /** How long a node must be NotReady before its primary pod is replaced, in seconds. */
  notReadyDelaySeconds: number;
}

export type WatchdogDecision =
  | { action: 'wait'; reason: string }
  | { action: 'delete-pod'; pod: string; uid: string; node: string; reason: string };

/** Decides whether to delete the primary pod. Never throws; every outcome carries the reason for the log. */
export function decideFailover(observation: WatchdogObservation, policy: WatchdogPolicy): WatchdogDecision {
  const { pod, node, lease, now } = observation;
  if (pod === undefined) return { action: 'wait', reason: 'no primary pod exists; the StatefulSet controller creates one' };
  if (pod.nodeName === undefined) return { action: 'wait', reason: `pod ${pod.name} is not scheduled yet` };
  if (node === undefined) {
    return { action: 'wait', reason: `node ${pod.nodeName} of pod ${pod.name} is not visible; the node controller removes pods of deleted nodes` };
  }
  if (node.ready === 'True') return { action: 'wait', reason: `node ${node.name} is Ready` };

  const notReadySeconds = node.readyTransitionTime === undefined ? undefined : (now.getTime() - node.readyTransitionTime.getTime()) / 1000;
  if (notReadySeconds === undefined) {
    return { action: 'wait', reason: `node ${node.name} is not Ready but reports no transition time; waiting for the node controller` };
  }
  if (notReadySeconds < policy.notReadyDelaySeconds) {
    return {
      action: 'wait',
      reason: `node ${node.name} has been NotReady for ${Math.floor(notReadySeconds)} s of the ${policy.notReadyDelaySeconds} s delay`,
    };
  }

  if (lease !== undefined && lease.holderIdentity !== undefined && lease.holderIdentity !== '') {
    if (lease.unchangedForSeconds === undefined) {
      return { action: 'wait', reason: `primary lease held by ${lease.holderIdentity}; observing whether it is still renewed` };
    }
    if (lease.unchangedForSeconds < lease.leaseDurationSeconds) {
      return {
        action: 'wait',
        reason: `primary lease held by ${lease.holderIdentity} was renewed ${Math.floor(lease.unchangedForSeconds)} s ago, within its ${lease.leaseDurationSeconds} s period`,
      };
    }
  }

  const leaseState =
    lease === undefined || lease.holderIdentity === undefined || lease.holderIdentity === ''
      ? 'no instance holds the primary lease'
      : `the primary lease of ${lease.holderIdentity} expired`;
  return {
    action: 'delete-pod',
    pod: pod.name,
    uid: pod.uid,
    node: node.name,
    reason: `node ${node.name} has been NotReady for ${Math.floor(notReadySeconds)} s (delay ${policy.notReadyDelaySeconds} s) and ${leaseState}`,
  };
}
