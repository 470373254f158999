import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSecurityContext } from 'kubernetes-models/v1/PodSecurityContext';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { ISecurityContext } from 'kubernetes-models/v1/SecurityContext';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import { DEPLOYMENT_PATHS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import { CONTAINER_NAMES, CONTAINER_USER_ID, objectNames, VOLUME_NAMES } from './names.js';

/** Returns the pod-level context: every container runs as the image's unprivileged user unless its own context overrides it. */
export function podSecurityContext(): IPodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: CONTAINER_USER_ID,
    runAsGroup: CONTAINER_USER_ID,
    fsGroup: CONTAINER_USER_ID,
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Returns the container context: no privilege escalation, no capabilities, a read-only root file system. */
export function restrictedContainerSecurityContext(): ISecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    capabilities: { drop: ['ALL'] },
  };
}

/** Returns the volume of the node's platform directory, shared by every CAS pod on the node. */
export function platformVolume(options: CasDeploymentOptions): IVolume {
  return {
    name: VOLUME_NAMES.platform,
    hostPath: { path: options.platformHostPath, type: 'DirectoryOrCreate' },
  };
}

/**
 * Builds the init container that gives the platform directory to the container user. The kubelet creates a
 * missing hostPath directory owned by root, so this is the one step that runs as root, and it keeps only
 * CAP_CHOWN and CAP_FOWNER (chmod on a directory it does not own).
 */
export function preparePlatformDirContainer(image: string): IContainer {
  const uid = String(CONTAINER_USER_ID);
  return {
    name: CONTAINER_NAMES.preparePlatform,
    image,
    imagePullPolicy: 'IfNotPresent',
    command: ['sh', '-c', 'chown "$0:$0" "$1" && chmod 0700 "$1"', uid, DEPLOYMENT_PATHS.platformDir],
    securityContext: {
      runAsNonRoot: false,
      runAsUser: 0,
      runAsGroup: 0,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      privileged: false,
      capabilities: { drop: ['ALL'], add: ['CHOWN', 'FOWNER'] },
    },
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '32Mi' } },
    volumeMounts: [{ name: VOLUME_NAMES.platform, mountPath: DEPLOYMENT_PATHS.platformDir }],
  };
}

/** Returns a writable /tmp volume, because the root file system is read-only. */
export function tmpVolume(): IVolume {
  return { name: VOLUME_NAMES.tmp, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } };
}

/** The parts of a pod that mounts the node's platform directory which differ between workloads. */
export interface PlatformPodParts {
  terminationGracePeriodSeconds: number;
  /** Init containers that run after the one that prepares the platform directory. */
  initContainers: IContainer[];
  containers: IContainer[];
  /** Volumes besides the platform directory and /tmp. */
  volumes: IVolume[];
}

/**
 * Builds the spec of a pod that uses the node's platform directory. It adds what every such pod shares: the
 * CAS service account without a mounted token, the restricted pod context, the node selector and image pull
 * Secret from the options, the init container that prepares the platform directory, and the platform and
 * /tmp volumes.
 */
export function platformPodSpec(options: CasDeploymentOptions, parts: PlatformPodParts): IPodSpec {
  return {
    serviceAccountName: objectNames(options.name).serviceAccount,
    automountServiceAccountToken: false,
    securityContext: podSecurityContext(),
    terminationGracePeriodSeconds: parts.terminationGracePeriodSeconds,
    ...(Object.keys(options.nodeSelector).length === 0 ? {} : { nodeSelector: options.nodeSelector }),
    ...(options.imagePullSecret === undefined ? {} : { imagePullSecrets: [{ name: options.imagePullSecret }] }),
    initContainers: [preparePlatformDirContainer(options.image), ...parts.initContainers],
    containers: parts.containers,
    volumes: [platformVolume(options), ...parts.volumes, tmpVolume()],
  };
}
