import { DEFAULTS, FILE_NAMES } from '../../config/defaults.js';

/** Field manager of every server-side apply, so ownership of fields is visible in `managedFields`. */
export const FIELD_MANAGER = 'kubectl-provision';

/** Names of volumes and volumeClaimTemplates. A claim is named `<template>-<statefulset>-<ordinal>`. */
export const VOLUME_NAMES = {
  database: 'cas-database',
  snapshots: 'cas-database-snapshots',
  auditLog: 'cas-audit-log',
  platform: 'cas-platform',
  provisioningToken: 'cas-provisioning-token',
  clientHome: 'cas-client-home',
  backupRegistrar: 'cas-backup-registrar',
  tmp: 'tmp',
} as const;

export const CONTAINER_NAMES = {
  server: 'cas',
  preparePlatform: 'prepare-platform-dir',
  registerBackup: 'register-backup',
  idle: 'idle',
} as const;

export const PORT_NAMES = { api: 'https', metrics: 'metrics' } as const;

/** Key inside the DCAP Secret. */
export const DCAP_SECRET_KEY = 'api-key';

/** Directory where the provisioning-token Secret is mounted; the file in it is FILE_NAMES.provisioningToken. */
export const PROVISIONING_TOKEN_MOUNT = '/var/run/secrets/cas-provisioning';
export const PROVISIONING_TOKEN_FILE = `${PROVISIONING_TOKEN_MOUNT}/${FILE_NAMES.provisioningToken}`;

/** Directory where the backup registrar Secret is mounted in the registration pods. */
export const BACKUP_REGISTRAR_MOUNT = '/var/run/secrets/cas-backup-registrar';

/** Keys of the backup registrar Secret: the registrar's client identity and the pinned CAS certificate. */
export const BACKUP_REGISTRAR_KEYS = {
  clientKey: 'client-key.pem',
  clientCertificate: 'client-cert.pem',
  casCertificate: 'cas-cert.pem',
} as const;

/** The `cas` CLI inside the image that the Dockerfile builds (its ENTRYPOINT runs the same file). */
export const IMAGE_CAS_CLI = '/app/dist/src/cli/main.js';

/** Scrape path of the metrics port, as `cas serve` serves it. */
export { METRICS_PATH } from '../../metrics/metrics-server.js';

/** UID and GID of the `node` user in the node:20-slim image that the Dockerfile builds on. */
export const CONTAINER_USER_ID = 1000;

/** Names of the objects that belong to the CAS `name`. */
export function objectNames(name: string) {
  return {
    statefulSet: name,
    service: name,
    serviceAccount: name,
    role: name,
    roleBinding: name,
    podDisruptionBudget: name,
    networkPolicy: name,
    backupDaemonSet: `${name}-backup`,
    backupNetworkPolicy: `${name}-backup`,
    dcapSecret: `${name}-dcap-api-key`,
    provisioningTokenSecret: `${name}-provisioning-token`,
    backupRegistrarSecret: `${name}-backup-registrar`,
    primaryPod: `${name}-0`,
    claims: {
      database: `${VOLUME_NAMES.database}-${name}-0`,
      snapshots: `${VOLUME_NAMES.snapshots}-${name}-0`,
      auditLog: `${VOLUME_NAMES.auditLog}-${name}-0`,
    },
  };
}

export type Component = 'primary' | 'backup';

/** Labels of every object; `component` separates the primary's pods from the backup registration pods. */
export function commonLabels(name: string, component?: Component): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'cas',
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/managed-by': FIELD_MANAGER,
    ...(component === undefined ? {} : { 'app.kubernetes.io/component': component }),
  };
}

/** Returns the labels that select one component's pods. Selectors are immutable, so this set never grows. */
export function selectorLabels(name: string, component: Component): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'cas',
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/component': component,
  };
}

/** Returns the CAS URL inside the cluster, through the Service. */
export function inClusterUrl(name: string, namespace: string): string {
  return `https://${name}.${namespace}.svc:${DEFAULTS.listenPort}`;
}
