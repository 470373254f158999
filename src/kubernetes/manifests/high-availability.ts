import type { KubeObject } from './index.js';
import type { CasDeploymentOptions } from './options.js';
import { CONTAINER_NAMES, objectNames } from './names.js';
import { buildWatchdogManifests, type WatchdogManifestOptions } from './watchdog.js';

/** Returns the name of the primary Lease of the CAS `name`; one per CAS, so several can share a namespace. */
export function primaryLeaseName(name: string): string {
  return `${name}-primary`;
}

type Json = Record<string, any>;

/**
 * Turns the objects of `buildManifests` into a deployment with Kubernetes failover, without changing the
 * input. The primary renews a coordination.k8s.io Lease (`cas serve --lease kubernetes`), which is why its pod
 * gets a service account token, Lease rights and its own name and namespace from the downward API. The
 * failover watchdog is appended (`buildWatchdogManifests`). The backup pods keep running without a token.
 *
 * Lease rights of the CAS Role: `get` and `update` on its own Lease only; `create` cannot be limited to a
 * name in RBAC, so it applies to leases in the namespace.
 */
export function withKubernetesFailover(objects: readonly KubeObject[], options: CasDeploymentOptions, notReadyDelaySeconds: number): KubeObject[] {
  const names = objectNames(options.name);
  const leaseName = primaryLeaseName(options.name);
  const result = structuredClone(objects as KubeObject[]) as Json[];

  const role = find(result, 'Role', names.role);
  role['rules'] = [
    ...(role['rules'] ?? []),
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
  ];

  const podSpec = find(result, 'StatefulSet', names.statefulSet)['spec'].template.spec;
  podSpec.automountServiceAccountToken = true;
  const server = (podSpec.containers as Json[]).find((container) => container['name'] === CONTAINER_NAMES.server);
  if (server === undefined) throw new Error(`the StatefulSet ${names.statefulSet} has no container ${CONTAINER_NAMES.server}`);
  server['args'] = [...server['args'], '--lease', 'kubernetes', '--lease-name', leaseName];
  server['env'] = [
    ...(server['env'] ?? []),
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    // The pod UID makes each incarnation of `NAME-0` a distinct lease holder: see serve-with-lease.ts.
    { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
  ];

  const watchdog: WatchdogManifestOptions = { notReadyDelaySeconds, leaseName };
  return [...(result as KubeObject[]), ...(buildWatchdogManifests(options, watchdog) as KubeObject[])];
}

function find(objects: Json[], kind: string, name: string): Json {
  const found = objects.find((object) => object['kind'] === kind && object['metadata']?.name === name);
  if (found === undefined) throw new Error(`the manifests have no ${kind} ${name}`);
  return found;
}
