import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { DEPLOYMENT_PATHS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, CONTAINER_NAMES, inClusterUrl, objectNames, selectorLabels, VOLUME_NAMES } from './names.js';
import {
  platformVolume,
  podSecurityContext,
  preparePlatformDirContainer,
  restrictedContainerSecurityContext,
  tmpVolume,
} from './pod-security.js';

/**
 * Registers every selected node as a backup target of the primary. A DaemonSet puts one pod on each node,
 * including nodes that join later, without a controller of our own and without cluster-wide RBAC. The
 * registration runs in an init container, which the kubelet retries with back-off until the primary
 * accepts it; the pod then keeps only a `sleep` process, so that the DaemonSet does not restart it.
 */
export function backupDaemonSet(options: CasDeploymentOptions): IDaemonSet {
  const names = objectNames(options.name);
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: names.backupDaemonSet, namespace: options.namespace, labels: commonLabels(options.name, 'backup') },
    spec: {
      selector: { matchLabels: selectorLabels(options.name, 'backup') },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%' } },
      template: {
        metadata: { labels: commonLabels(options.name, 'backup') },
        spec: {
          serviceAccountName: names.serviceAccount,
          automountServiceAccountToken: false,
          securityContext: podSecurityContext(),
          terminationGracePeriodSeconds: 5,
          ...(Object.keys(options.nodeSelector).length === 0 ? {} : { nodeSelector: options.nodeSelector }),
          ...(options.imagePullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.imagePullSecret }] }),
          initContainers: [
            preparePlatformDirContainer(options.image),
            {
              name: CONTAINER_NAMES.registerBackup,
              image: options.image,
              imagePullPolicy: 'IfNotPresent',
              args: backupRegisterArguments(options),
              env: [{ name: 'CAS_HOME', value: DEPLOYMENT_PATHS.casHome }],
              resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [
                { name: VOLUME_NAMES.platform, mountPath: DEPLOYMENT_PATHS.platformDir },
                { name: VOLUME_NAMES.clientHome, mountPath: DEPLOYMENT_PATHS.casHome },
                { name: VOLUME_NAMES.tmp, mountPath: '/tmp' },
              ],
            },
          ],
          containers: [
            {
              name: CONTAINER_NAMES.idle,
              image: options.image,
              imagePullPolicy: 'IfNotPresent',
              command: ['sleep', 'infinity'],
              resources: { requests: { cpu: '1m', memory: '4Mi' }, limits: { cpu: '10m', memory: '16Mi' } },
              securityContext: restrictedContainerSecurityContext(),
            },
          ],
          volumes: [platformVolume(options), { name: VOLUME_NAMES.clientHome, emptyDir: {} }, tmpVolume()],
        },
      },
    },
  };
}

export function backupRegisterArguments(options: CasDeploymentOptions): string[] {
  return [
    'backup',
    'register',
    '--cas', inClusterUrl(options.name, options.namespace),
    '--platform-dir', DEPLOYMENT_PATHS.platformDir,
  ];
}
