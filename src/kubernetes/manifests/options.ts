import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';

/** Kubernetes Service types that `--service-type` accepts. */
export const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

export type CasMode = typeof DEFAULTS.mode;

/** Everything the manifest builders need. Secret values are absent: builders never see them. */
export interface CasDeploymentOptions {
  /** Name of the CAS: the StatefulSet, Service and prefix of every other object. */
  name: string;
  namespace: string;
  image: string;
  /** Name of the docker-registry Secret the pods pull the image with; undefined for a public image. */
  imagePullSecret: string | undefined;
  mode: CasMode;
  snapshotIntervalSeconds: number;
  /** StorageClass of the three claims; undefined uses the cluster's default StorageClass. */
  storageClass: string | undefined;
  serviceType: ServiceType;
  /** Size of each PersistentVolumeClaim, as a Kubernetes quantity. */
  storage: { database: string; snapshots: string; auditLog: string };
  /** Labels a node must have to run the primary and to be registered as a backup target; empty means all nodes. */
  nodeSelector: Record<string, string>;
  /** Directory on each node that holds the node's platform key. */
  platformHostPath: string;
  /** False for `--no-backup`: no backup DaemonSet, so no node besides the primary's can open the database. Default true. */
  backup?: boolean;
  /** `--webhook URL`: the CAS POSTs every audit entry to this URL (`cas serve --audit-webhook`). */
  auditWebhook?: string | undefined;
  /**
   * `--failover-delay`: seconds the primary's node must be NotReady before the failover watchdog deletes the
   * primary pod (`cas watchdog --not-ready-delay`). Default DEFAULT_FAILOVER_DELAY_SECONDS.
   */
  failoverDelaySeconds?: number;
}

/**
 * Default of `--failover-delay`, in seconds: the default of `cas watchdog --not-ready-delay`. See "The delay:
 * fast failover against split-brain" in docs/high-availability.md for the trade-off.
 */
export const DEFAULT_FAILOVER_DELAY_SECONDS = 60;

/** Longest `--failover-delay`: one day. A longer delay would leave a CAS on a failed node down indefinitely. */
export const MAX_FAILOVER_DELAY_SECONDS = 86_400;

/** The Azure key: Azure's DCAP caching service does not check it, and any other service rejects it. */
export const AZURE_DCAP_API_KEY = '00000000000000000000000000000000';

/**
 * The key used when `--dcap-api` is missing. No key issued by Intel can ship in an open-source tool, so the
 * default is the Azure key, and the plugin warns that it may stop working.
 */
export const DEFAULT_DCAP_API_KEY = AZURE_DCAP_API_KEY;

/** Repository of the image that the Dockerfile in this repository builds; the tag is the package version. */
export const DEFAULT_IMAGE_REPOSITORY = 'ghcr.io/cas-project/cas';

export const DEFAULT_IMAGE_PULL_SECRET = 'cas-image-pull';

/** Host directory for platform keys. One directory per node, shared by every CAS pod on that node. */
export const DEFAULT_PLATFORM_HOST_PATH = '/var/lib/cas-platform';

export const DEFAULT_STORAGE = { database: '1Gi', snapshots: '5Gi', auditLog: '2Gi' } as const;

/** The version in package.json, found by walking up from this file (works from src/ and dist/src/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown };
      if (typeof manifest.version === 'string') return manifest.version;
    } catch {
      // No package.json in this directory: keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) throw new CasError('INTERNAL', 'package.json not found above the kubectl-provision plugin');
    dir = parent;
  }
}

export function defaultImage(): string {
  return `${DEFAULT_IMAGE_REPOSITORY}:${packageVersion()}`;
}

/** A DNS-1123 label: what Kubernetes requires of names that become part of other names and of DNS. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The longest CAS name whose derived names stay valid: a StatefulSet pod's `controller-revision-hash` label
 * is `NAME-` plus a 10-character hash and must fit in 63 characters, and the claim
 * `cas-database-snapshots-NAME-0` must too.
 */
export const MAX_NAME_LENGTH = 63 - 'cas-database-snapshots-'.length - '-0'.length;

/** Checks the options a user can type; throws INVALID_ARGUMENT naming the flag. */
export function validateOptions(options: CasDeploymentOptions): void {
  if (!DNS_LABEL.test(options.name) || options.name.length > MAX_NAME_LENGTH) {
    throw new CasError(
      'INVALID_ARGUMENT',
      `invalid CAS name "${options.name}": use at most ${MAX_NAME_LENGTH} lowercase letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  if (!DNS_LABEL.test(options.namespace)) {
    throw new CasError('INVALID_ARGUMENT', `invalid namespace "${options.namespace}": expected a DNS-1123 label`);
  }
  if (!Number.isInteger(options.snapshotIntervalSeconds) || options.snapshotIntervalSeconds < 1 || options.snapshotIntervalSeconds > 86_400) {
    throw new CasError('INVALID_ARGUMENT', `invalid --snapshot-interval ${options.snapshotIntervalSeconds}: expected whole seconds from 1 to 86400`);
  }
  const failoverDelay = options.failoverDelaySeconds ?? DEFAULT_FAILOVER_DELAY_SECONDS;
  if (!Number.isInteger(failoverDelay) || failoverDelay < 1 || failoverDelay > MAX_FAILOVER_DELAY_SECONDS) {
    throw new CasError('INVALID_ARGUMENT', `invalid --failover-delay of ${failoverDelay} s: expected whole seconds from 1 s to 24h`);
  }
  if (!(SERVICE_TYPES as readonly string[]).includes(options.serviceType)) {
    throw new CasError('INVALID_ARGUMENT', `invalid --service-type "${options.serviceType}": expected one of ${SERVICE_TYPES.join(', ')}`);
  }
  if (options.image.trim() === '' || /\s/.test(options.image)) {
    throw new CasError('INVALID_ARGUMENT', `invalid --image "${options.image}": expected an image reference without spaces`);
  }
  if (!options.platformHostPath.startsWith('/')) {
    throw new CasError('INVALID_ARGUMENT', `invalid --platform-host-path "${options.platformHostPath}": expected an absolute path`);
  }
  for (const [flag, quantity] of Object.entries(options.storage)) {
    if (!/^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/.test(quantity)) {
      throw new CasError('INVALID_ARGUMENT', `invalid ${flag} storage size "${quantity}": expected a quantity such as 5Gi`);
    }
  }
}
