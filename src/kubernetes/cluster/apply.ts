import { KubernetesObjectApi, PatchStrategy, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../manifests/names.js';
import type { KubeObject } from '../manifests/index.js';
import { kubeApiError } from './api-errors.js';

/** `kind.group/name`, as kubectl prints it (`statefulset.apps/mycas`). */
export function resourceLabel(object: KubeObject): string {
  const group = object.apiVersion.includes('/') ? `.${object.apiVersion.slice(0, object.apiVersion.indexOf('/'))}` : '';
  return `${object.kind.toLowerCase()}${group}/${object.metadata?.name ?? ''}`;
}

/**
 * Server-side applies each object (PATCH with application/apply-patch+yaml, fieldManager
 * kubectl-provision, force), in order, so a re-run reconciles instead of duplicating. Calls `onApplied`
 * once per object. Never deletes anything.
 */
export async function applyObjects(
  config: KubeConfig,
  objects: KubeObject[],
  onApplied: (object: KubeObject) => void,
): Promise<KubernetesObject[]> {
  const client = KubernetesObjectApi.makeApiClient(config);
  const applied: KubernetesObject[] = [];
  for (const object of objects) {
    try {
      const result = await client.patch(
        object as KubernetesObject,
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      );
      applied.push(result);
    } catch (error) {
      throw kubeApiError(`applying ${resourceLabel(object)}`, error);
    }
    onApplied(object);
  }
  return applied;
}
