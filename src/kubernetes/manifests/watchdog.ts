import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import type { IClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DEFAULTS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, objectNames, selectorLabels } from './names.js';
import { podSecurityContext, restrictedContainerSecurityContext } from './pod-security.js';

/** Settings of the failover watchdog; see docs/high-availability.md for the trade-off of the delay. */
export interface WatchdogManifestOptions {
  /** Seconds a node must be NotReady before the primary pod on it is deleted. */
  notReadyDelaySeconds: number;
  /** Name of the primary Lease the CAS renews with `--lease kubernetes`. */
  leaseName: string;
}

export const DEFAULT_WATCHDOG_OPTIONS: WatchdogManifestOptions = { notReadyDelaySeconds: 60, leaseName: DEFAULTS.leaseName };

/** Names of the watchdog's objects. The ClusterRole and its binding are cluster-wide, so they carry the namespace. */
export function watchdogNames(options: CasDeploymentOptions): { namespaced: string; clusterWide: string } {
  return { namespaced: `${options.name}-watchdog`, clusterWide: `cas-watchdog-${options.namespace}-${options.name}` };
}

/**
 * Builds the failover watchdog: its ServiceAccount, least-privilege RBAC and a one-replica Deployment that
 * runs `cas watchdog`. The watchdog reads single named objects only, so it gets `get` on nodes (the one
 * cluster-wide grant, because the primary may run on any node), `get` and `delete` on the primary pod alone,
 * and `get` on the primary Lease alone. It needs no list or watch.
 */
export function buildWatchdogManifests(options: CasDeploymentOptions, watchdog: WatchdogManifestOptions = DEFAULT_WATCHDOG_OPTIONS): unknown[] {
  return [
    watchdogServiceAccount(options),
    watchdogClusterRole(options),
    watchdogClusterRoleBinding(options),
    watchdogRole(options, watchdog),
    watchdogRoleBinding(options),
    watchdogDeployment(options, watchdog),
  ];
}

export function watchdogServiceAccount(options: CasDeploymentOptions): IServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: watchdogNames(options).namespaced, namespace: options.namespace, labels: watchdogLabels(options) },
    automountServiceAccountToken: true,
  };
}

export function watchdogClusterRole(options: CasDeploymentOptions): IClusterRole {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: watchdogNames(options).clusterWide, labels: watchdogLabels(options) },
    rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }],
  };
}

export function watchdogClusterRoleBinding(options: CasDeploymentOptions): IClusterRoleBinding {
  const names = watchdogNames(options);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: names.clusterWide, labels: watchdogLabels(options) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: names.clusterWide },
    subjects: [{ kind: 'ServiceAccount', name: names.namespaced, namespace: options.namespace }],
  };
}

export function watchdogRole(options: CasDeploymentOptions, watchdog: WatchdogManifestOptions): IRole {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: watchdogNames(options).namespaced, namespace: options.namespace, labels: watchdogLabels(options) },
    rules: [
      { apiGroups: [''], resources: ['pods'], resourceNames: [objectNames(options.name).primaryPod], verbs: ['get', 'delete'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [watchdog.leaseName], verbs: ['get'] },
    ],
  };
}

export function watchdogRoleBinding(options: CasDeploymentOptions): IRoleBinding {
  const name = watchdogNames(options).namespaced;
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name, namespace: options.namespace, labels: watchdogLabels(options) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    subjects: [{ kind: 'ServiceAccount', name, namespace: options.namespace }],
  };
}

/**
 * Builds the watchdog's Deployment. It prefers a node other than the primary's, since a watchdog on the
 * failed node cannot act. It tolerates an unreachable or NotReady node for 30 s instead of the default
 * 300 s, so it is rescheduled quickly when its own node fails.
 */
export function watchdogDeployment(options: CasDeploymentOptions, watchdog: WatchdogManifestOptions): IDeployment {
  const name = watchdogNames(options).namespaced;
  const labels = watchdogLabels(options);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: options.namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'cas', 'app.kubernetes.io/instance': options.name, 'app.kubernetes.io/component': 'watchdog' } },
      strategy: { type: 'Recreate' },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: name,
          automountServiceAccountToken: true,
          securityContext: podSecurityContext(),
          ...(options.imagePullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.imagePullSecret }] }),
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selectorLabels(options.name, 'primary') } } },
              ],
            },
          },
          tolerations: [
            { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 },
            { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 },
          ],
          containers: [
            {
              name: 'watchdog',
              image: options.image,
              imagePullPolicy: 'IfNotPresent',
              args: [
                'watchdog',
                '--pod', objectNames(options.name).primaryPod,
                '--lease-name', watchdog.leaseName,
                '--not-ready-delay', String(watchdog.notReadyDelaySeconds),
                '--interval', '5',
              ],
              env: [{ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }],
              resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } },
              securityContext: restrictedContainerSecurityContext(),
            },
          ],
        },
      },
    },
  };
}

function watchdogLabels(options: CasDeploymentOptions): Record<string, string> {
  return { ...commonLabels(options.name), 'app.kubernetes.io/component': 'watchdog' };
}
