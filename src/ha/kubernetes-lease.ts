import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { apiStatus, kubeApiError } from '../kubernetes/cluster/api-errors.js';
import type { LeaseHolder, LeaseRecord, LeaseStore } from './lease.js';

/** Annotations of the Lease that carry what `holderIdentity` cannot: the primary's URL and platform id. */
export const LEASE_ANNOTATIONS = {
  url: 'cas-project.github.io/primary-url',
  platformId: 'cas-project.github.io/primary-platform-id',
  /** The fencing token; `leaseTransitions` is not used because the release of a lease does not change it. */
  token: 'cas-project.github.io/fencing-token',
} as const;

/**
 * A lease stored as a coordination.k8s.io/v1 Lease. Compare-and-swap uses the object's resourceVersion:
 * the API server rejects a replace whose resourceVersion is stale with 409 Conflict, and a create of an
 * existing Lease with 409 AlreadyExists. The service account needs get, create and update on leases.
 */
export class KubernetesLeaseStore implements LeaseStore {
  readonly location: string;
  private readonly api: CoordinationV1Api;

  constructor(config: KubeConfig, private readonly namespace: string, private readonly name: string) {
    this.api = config.makeApiClient(CoordinationV1Api);
    this.location = `Lease ${namespace}/${name}`;
  }

  async read(): Promise<LeaseRecord | undefined> {
    try {
      return toRecord(await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }));
    } catch (error) {
      if (apiStatus(error) === 404) return undefined;
      throw kubeApiError(`Reading ${this.location}`, error);
    }
  }

  async compareAndSwap(expected: LeaseRecord | undefined, next: Omit<LeaseRecord, 'version'>): Promise<LeaseRecord | undefined> {
    const body = this.toLease(next, expected);
    try {
      const written =
        expected === undefined
          ? await this.api.createNamespacedLease({ namespace: this.namespace, body })
          : await this.api.replaceNamespacedLease({ name: this.name, namespace: this.namespace, body });
      return toRecord(written);
    } catch (error) {
      if (apiStatus(error) === 409) return undefined;
      throw kubeApiError(`Writing ${this.location}`, error);
    }
  }

  private toLease(next: Omit<LeaseRecord, 'version'>, expected: LeaseRecord | undefined): V1Lease {
    const holder = next.holder;
    const changesHands = expected?.holder?.id !== holder?.id;
    const annotations: Record<string, string> = { [LEASE_ANNOTATIONS.token]: String(next.token) };
    if (holder?.url !== undefined) annotations[LEASE_ANNOTATIONS.url] = holder.url;
    if (holder?.platformId !== undefined) annotations[LEASE_ANNOTATIONS.platformId] = holder.platformId;
    const now = new Date(next.renewedAt);
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.name,
        namespace: this.namespace,
        annotations,
        ...(expected === undefined ? {} : { resourceVersion: expected.version }),
      },
      spec: {
        ...(holder === undefined ? {} : { holderIdentity: holder.id }),
        leaseDurationSeconds: Math.max(1, Math.ceil(next.durationMs / 1000)),
        renewTime: now,
        ...(changesHands && holder !== undefined ? { acquireTime: now } : {}),
        leaseTransitions: next.token,
      },
    } as V1Lease;
  }
}

function toRecord(lease: V1Lease): LeaseRecord {
  const annotations = lease.metadata?.annotations ?? {};
  const spec = lease.spec ?? {};
  const holderId = spec.holderIdentity;
  let holder: LeaseHolder | undefined;
  if (holderId !== undefined && holderId !== '') {
    holder = { id: holderId };
    const url = annotations[LEASE_ANNOTATIONS.url];
    const platformId = annotations[LEASE_ANNOTATIONS.platformId];
    if (url !== undefined) holder.url = url;
    if (platformId !== undefined) holder.platformId = platformId;
  }
  const token = Number(annotations[LEASE_ANNOTATIONS.token] ?? spec.leaseTransitions ?? 0);
  const renewTime = spec.renewTime as unknown;
  return {
    holder,
    token: Number.isSafeInteger(token) && token > 0 ? token : 1,
    durationMs: (spec.leaseDurationSeconds ?? 15) * 1000,
    version: lease.metadata?.resourceVersion ?? '',
    renewedAt: renewTime instanceof Date ? renewTime.toISOString() : String(renewTime ?? ''),
  };
}
