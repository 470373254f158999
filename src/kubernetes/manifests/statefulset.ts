import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { DEFAULTS, DEPLOYMENT_PATHS, ENV_VARS, HEALTH_PATHS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import {
  commonLabels,
  CONTAINER_NAMES,
  DCAP_SECRET_KEY,
  METRICS_PATH,
  objectNames,
  PORT_NAMES,
  PROVISIONING_TOKEN_FILE,
  PROVISIONING_TOKEN_MOUNT,
  selectorLabels,
  VOLUME_NAMES,
} from './names.js';
import { platformPodSpec, restrictedContainerSecurityContext } from './pod-security.js';

/**
 * Builds the primary CAS: a StatefulSet of one replica, so that Kubernetes never runs two pods with the same
 * identity and the three claims follow the pod. The claims are kept when the StatefulSet is deleted or
 * scaled down.
 */
export function casStatefulSet(options: CasDeploymentOptions): IStatefulSet {
  const names = objectNames(options.name);
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: names.statefulSet, namespace: options.namespace, labels: commonLabels(options.name, 'primary') },
    spec: {
      replicas: 1,
      serviceName: names.service,
      podManagementPolicy: 'OrderedReady',
      updateStrategy: { type: 'RollingUpdate' },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
      selector: { matchLabels: selectorLabels(options.name, 'primary') },
      template: {
        metadata: {
          labels: commonLabels(options.name, 'primary'),
          annotations: {
            'prometheus.io/scrape': 'true',
            'prometheus.io/port': String(DEFAULTS.metricsPort),
            'prometheus.io/path': METRICS_PATH,
          },
        },
        spec: platformPodSpec(options, {
          terminationGracePeriodSeconds: 30,
          initContainers: [],
          containers: [serverContainer(options)],
          volumes: [
            {
              name: VOLUME_NAMES.provisioningToken,
              // Optional: the plugin deletes this Secret after provisioning, and a restarted pod must still start.
              secret: { secretName: names.provisioningTokenSecret, optional: true, defaultMode: 0o400 },
            },
          ],
        }),
      },
      volumeClaimTemplates: [
        claimTemplate(VOLUME_NAMES.database, options.storage.database, options),
        claimTemplate(VOLUME_NAMES.snapshots, options.storage.snapshots, options),
        claimTemplate(VOLUME_NAMES.auditLog, options.storage.auditLog, options),
      ],
    },
  };
}

/** Returns the command line of `cas serve` in the pod; every path comes from DEPLOYMENT_PATHS. */
export function serveArguments(options: CasDeploymentOptions): string[] {
  return [
    'serve',
    '--data-dir', DEPLOYMENT_PATHS.dataDir,
    '--listen', `0.0.0.0:${DEFAULTS.listenPort}`,
    '--platform-dir', DEPLOYMENT_PATHS.platformDir,
    '--mode', options.mode,
    '--snapshot-interval', String(options.snapshotIntervalSeconds),
    '--snapshot-dir', DEPLOYMENT_PATHS.snapshotDir,
    '--audit-log', DEPLOYMENT_PATHS.auditLog,
    '--provisioning-token-file', PROVISIONING_TOKEN_FILE,
    ...(options.auditWebhook === undefined ? [] : ['--audit-webhook', options.auditWebhook]),
  ];
}

function serverContainer(options: CasDeploymentOptions): IContainer {
  const names = objectNames(options.name);
  return {
    name: CONTAINER_NAMES.server,
    image: options.image,
    imagePullPolicy: 'IfNotPresent',
    args: serveArguments(options),
    env: [
      { name: ENV_VARS.dcapApiKey, valueFrom: { secretKeyRef: { name: names.dcapSecret, key: DCAP_SECRET_KEY } } },
    ],
    ports: [
      { name: PORT_NAMES.api, containerPort: DEFAULTS.listenPort, protocol: 'TCP' },
      { name: PORT_NAMES.metrics, containerPort: DEFAULTS.metricsPort, protocol: 'TCP' },
    ],
    resources: {
      requests: { cpu: '250m', memory: '256Mi', 'ephemeral-storage': '64Mi' },
      limits: { memory: '512Mi', 'ephemeral-storage': '256Mi' },
    },
    // Up to 5 minutes to start: opening a large database or waiting for collateral can be slow.
    startupProbe: healthProbe(HEALTH_PATHS.startup, { periodSeconds: 5, failureThreshold: 60 }),
    livenessProbe: healthProbe(HEALTH_PATHS.liveness, { periodSeconds: 10, failureThreshold: 3 }),
    readinessProbe: healthProbe(HEALTH_PATHS.readiness, { periodSeconds: 5, failureThreshold: 2 }),
    securityContext: restrictedContainerSecurityContext(),
    volumeMounts: [
      { name: VOLUME_NAMES.database, mountPath: DEPLOYMENT_PATHS.dataDir },
      { name: VOLUME_NAMES.snapshots, mountPath: DEPLOYMENT_PATHS.snapshotDir },
      { name: VOLUME_NAMES.auditLog, mountPath: DEPLOYMENT_PATHS.auditDir },
      { name: VOLUME_NAMES.platform, mountPath: DEPLOYMENT_PATHS.platformDir },
      { name: VOLUME_NAMES.provisioningToken, mountPath: PROVISIONING_TOKEN_MOUNT, readOnly: true },
      { name: VOLUME_NAMES.tmp, mountPath: '/tmp' },
    ],
  };
}

function healthProbe(path: string, timing: { periodSeconds: number; failureThreshold: number }): IProbe {
  return {
    // The kubelet does not verify the server certificate of an HTTPS probe, so the CAS's own certificate works.
    httpGet: { path, port: PORT_NAMES.api, scheme: 'HTTPS' },
    timeoutSeconds: 3,
    successThreshold: 1,
    ...timing,
  };
}

function claimTemplate(name: string, size: string, options: CasDeploymentOptions): IPersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, labels: commonLabels(options.name, 'primary') },
    spec: {
      accessModes: ['ReadWriteOnce'],
      ...(options.storageClass === undefined ? {} : { storageClassName: options.storageClass }),
      resources: { requests: { storage: size } },
    },
  };
}
