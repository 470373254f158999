import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { CasError } from '../../errors/cas-error.js';
import { isNotFound, kubeApiError } from './api-errors.js';

/** Fails with `namespace "X" not found` before anything is created, because kubectl's users expect that. */
export async function requireNamespace(config: KubeConfig, namespace: string): Promise<void> {
  const core = config.makeApiClient(CoreV1Api);
  try {
    await core.readNamespace({ name: namespace });
  } catch (error) {
    if (isNotFound(error)) {
      throw new CasError('KUBE_NAMESPACE_NOT_FOUND', `namespace "${namespace}" not found: create it with "kubectl create namespace ${namespace}" or pass another -n`);
    }
    throw kubeApiError(`reading namespace "${namespace}"`, error);
  }
}

/** Fails with the command that creates the image pull Secret when the pods would reference a missing one. */
export async function requirePullSecret(config: KubeConfig, namespace: string, secretName: string, image: string): Promise<void> {
  const core = config.makeApiClient(CoreV1Api);
  try {
    await core.readNamespacedSecret({ name: secretName, namespace });
  } catch (error) {
    if (!isNotFound(error)) throw kubeApiError(`reading Secret "${secretName}"`, error);
    const registry = image.includes('/') ? image.slice(0, image.indexOf('/')) : 'docker.io';
    throw new CasError(
      'KUBE_PULL_SECRET_MISSING',
      `image pull Secret "${secretName}" not found in namespace "${namespace}": create it with ` +
        `"kubectl create secret docker-registry ${secretName} -n ${namespace} --docker-server=${registry} ` +
        `--docker-username=USER --docker-password=TOKEN", or pass --image-pull-secret "" for a public image`,
    );
  }
}
