import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { DEFAULTS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, objectNames, selectorLabels } from './names.js';

/**
 * Allows ingress to the primary only on the CAS API and metrics ports. Sources are not restricted, because
 * confidential services anywhere in the cluster attest to the CAS and the API authenticates every client.
 */
export function primaryNetworkPolicy(options: CasDeploymentOptions): INetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: objectNames(options.name).networkPolicy, namespace: options.namespace, labels: commonLabels(options.name, 'primary') },
    spec: {
      podSelector: { matchLabels: selectorLabels(options.name, 'primary') },
      policyTypes: ['Ingress'],
      ingress: [
        {
          ports: [
            { protocol: 'TCP', port: DEFAULTS.listenPort },
            { protocol: 'TCP', port: DEFAULTS.metricsPort },
          ],
        },
      ],
    },
  };
}

/** Denies all ingress to the backup registration pods, which listen on nothing. */
export function backupNetworkPolicy(options: CasDeploymentOptions): INetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: objectNames(options.name).backupNetworkPolicy, namespace: options.namespace, labels: commonLabels(options.name, 'backup') },
    spec: {
      podSelector: { matchLabels: selectorLabels(options.name, 'backup') },
      policyTypes: ['Ingress'],
    },
  };
}
