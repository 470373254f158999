import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { CLIENT_CERT_FILE, CLIENT_KEY_FILE, PINNED_DIR, pinFileName } from '../../client/home.js';
import { DEPLOYMENT_PATHS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import {
  BACKUP_REGISTRAR_KEYS,
  BACKUP_REGISTRAR_MOUNT,
  commonLabels,
  CONTAINER_NAMES,
  IMAGE_CAS_CLI,
  inClusterUrl,
  objectNames,
  selectorLabels,
  VOLUME_NAMES,
} from './names.js';
import { platformPodSpec, restrictedContainerSecurityContext } from './pod-security.js';

/**
 * Registers every selected node as a backup target of the primary. A DaemonSet puts one pod on each node,
 * including nodes that join later, without a controller of our own and without cluster-wide RBAC. The
 * registration runs in an init container, which the kubelet retries with back-off until the primary
 * accepts it. The pod then keeps only a `sleep` process, so that the DaemonSet does not restart it.
 *
 * The registration authenticates with the backup registrar identity from the Secret NAME-backup-registrar
 * (written by the plugin after provisioning), never with the CAS owner's key.
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
        spec: platformPodSpec(options, {
          terminationGracePeriodSeconds: 5,
          initContainers: [
            {
              name: CONTAINER_NAMES.registerBackup,
              image: options.image,
              imagePullPolicy: 'IfNotPresent',
              command: ['sh', '-c', REGISTER_SCRIPT, BACKUP_REGISTRAR_MOUNT, pinFileName(new URL(inClusterUrl(options.name, options.namespace)))],
              args: backupRegisterArguments(options),
              env: [{ name: 'CAS_HOME', value: DEPLOYMENT_PATHS.casHome }],
              resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
              securityContext: restrictedContainerSecurityContext(),
              volumeMounts: [
                { name: VOLUME_NAMES.platform, mountPath: DEPLOYMENT_PATHS.platformDir },
                { name: VOLUME_NAMES.clientHome, mountPath: DEPLOYMENT_PATHS.casHome },
                { name: VOLUME_NAMES.backupRegistrar, mountPath: BACKUP_REGISTRAR_MOUNT, readOnly: true },
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
          volumes: [
            { name: VOLUME_NAMES.clientHome, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
            // Optional, so that a GitOps deployment starts before the plugin has written the Secret; until
            // then the registration fails and the kubelet retries it.
            { name: VOLUME_NAMES.backupRegistrar, secret: { secretName: names.backupRegistrarSecret, optional: true, defaultMode: 0o440 } },
          ],
        }),
      },
    },
  };
}

/**
 * Copies the registrar identity and the pinned CAS certificate from the Secret mount ($0) into a private
 * CAS_HOME (the client rejects key files that other users can read, and Secret files are group-readable
 * under fsGroup), then runs `cas "$@"`. $1 is the pin file name of the in-cluster CAS URL. The kubelet
 * reruns the script in the same pod after a failure, so it replaces the copies of an earlier attempt.
 */
const REGISTER_SCRIPT = [
  'set -e',
  'umask 077',
  `mkdir -p "$CAS_HOME/${PINNED_DIR}"`,
  // The emptyDir outlives a failed attempt, and cp cannot overwrite the read-only copies it made then.
  `rm -f "$CAS_HOME/${CLIENT_KEY_FILE}" "$CAS_HOME/${CLIENT_CERT_FILE}" "$CAS_HOME/${PINNED_DIR}/$1"`,
  `cp "$0/${BACKUP_REGISTRAR_KEYS.clientKey}" "$CAS_HOME/${CLIENT_KEY_FILE}"`,
  `cp "$0/${BACKUP_REGISTRAR_KEYS.clientCertificate}" "$CAS_HOME/${CLIENT_CERT_FILE}"`,
  `cp "$0/${BACKUP_REGISTRAR_KEYS.casCertificate}" "$CAS_HOME/${PINNED_DIR}/$1"`,
  'shift',
  `exec node ${IMAGE_CAS_CLI} "$@"`,
].join('\n');

/**
 * Arguments of `cas backup register`, after the pin file name that the script shifts away. `--mode`
 * matches the primary's, because a node's platform key is sealed the same way.
 */
export function backupRegisterArguments(options: CasDeploymentOptions): string[] {
  return [
    'backup',
    'register',
    '--cas', inClusterUrl(options.name, options.namespace),
    '--platform-dir', DEPLOYMENT_PATHS.platformDir,
    '--mode', options.mode,
  ];
}
