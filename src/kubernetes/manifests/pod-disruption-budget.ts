import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, objectNames, selectorLabels } from './names.js';

/**
 * Keeps `kubectl drain` and the cluster autoscaler from evicting the only primary. An operator moves it on
 * purpose with `kubectl delete pod`. With `unhealthyPodEvictionPolicy: AlwaysAllow`
 * (policy/v1, GA in Kubernetes 1.31) a pod that is not ready may be evicted, so a broken primary does
 * not block a drain.
 */
export function casPodDisruptionBudget(options: CasDeploymentOptions): IPodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: objectNames(options.name).podDisruptionBudget, namespace: options.namespace, labels: commonLabels(options.name, 'primary') },
    spec: {
      minAvailable: 1,
      selector: { matchLabels: selectorLabels(options.name, 'primary') },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}
