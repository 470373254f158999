import type { CasDeploymentOptions } from './options.js';
import { backupDaemonSet } from './backup-daemonset.js';
import { backupNetworkPolicy, primaryNetworkPolicy } from './network-policy.js';
import { withKubernetesFailover } from './high-availability.js';
import { DEFAULT_FAILOVER_DELAY_SECONDS } from './options.js';
import { casPodDisruptionBudget } from './pod-disruption-budget.js';
import { casRole, casRoleBinding, casServiceAccount } from './rbac.js';
import { dcapApiKeySecret } from './secrets.js';
import { casService } from './service.js';
import { casStatefulSet } from './statefulset.js';

/** A Kubernetes object as the builders return it: plain data, ready for YAML or for server-side apply. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/**
 * Builds every object of a CAS deployment, in apply order: identities and Secrets before the pods that use them,
 * the primary before the backup pods that register with it, then the failover watchdog. The primary holds
 * a Kubernetes Lease (`withKubernetesFailover`). `--dry-run` prints this list, the apply path and the day-2
 * verbs send it unchanged.
 */
export function buildManifests(options: CasDeploymentOptions, dcapApiKey: string): KubeObject[] {
  return withKubernetesFailover(buildCoreManifests(options, dcapApiKey), options, options.failoverDelaySeconds ?? DEFAULT_FAILOVER_DELAY_SECONDS);
}

/**
 * Builds the objects of a CAS deployment without failover: the primary alone, with the lock-file lease on
 * its database volume. Only `withKubernetesFailover` and its tests use this list; deploy `buildManifests`.
 */
export function buildCoreManifests(options: CasDeploymentOptions, dcapApiKey: string): KubeObject[] {
  const objects: unknown[] = [
    casServiceAccount(options),
    casRole(options),
    casRoleBinding(options),
    dcapApiKeySecret(options.name, options.namespace, dcapApiKey),
    casService(options),
    primaryNetworkPolicy(options),
    ...(options.backup === false ? [] : [backupNetworkPolicy(options)]),
    casPodDisruptionBudget(options),
    casStatefulSet(options),
    ...(options.backup === false ? [] : [backupDaemonSet(options)]),
  ];
  return objects as KubeObject[];
}

export type { CasDeploymentOptions } from './options.js';
