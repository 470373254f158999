import { ApisApi, type KubeConfig } from '@kubernetes/client-node';
import { kubeApiError } from './api-errors.js';

/** Returns whether the API server announces `groupVersion` (such as `monitoring.coreos.com/v1`) in its discovery. */
export async function servesGroupVersion(config: KubeConfig, groupVersion: string): Promise<boolean> {
  try {
    const groups = await config.makeApiClient(ApisApi).getAPIVersions();
    return groups.groups.some((group) => group.versions.some((version) => version.groupVersion === groupVersion));
  } catch (error) {
    throw kubeApiError('reading the API groups (discovery)', error);
  }
}
