import type { IRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, objectNames } from './names.js';

/**
 * Builds the pods' own identity, so they do not run as the namespace's `default` ServiceAccount, which
 * other workloads may have been granted rights to. No token is mounted by default: the backup pods never
 * call the Kubernetes API (the kubelet delivers their Secrets). Only the primary's pod, which renews its
 * Lease, opts in (`withKubernetesFailover`).
 */
export function casServiceAccount(options: CasDeploymentOptions): IServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: objectNames(options.name).serviceAccount, namespace: options.namespace, labels: commonLabels(options.name) },
    automountServiceAccountToken: false,
  };
}

/**
 * Builds the Role of the CAS pods, without rules: `cas backup register` uses no Kubernetes API verb. The
 * only rules are the Lease verbs of `cas serve --lease kubernetes`, which `withKubernetesFailover` in
 * high-availability.ts adds beside the flag that needs them, so any other grant is a reviewed change.
 */
export function casRole(options: CasDeploymentOptions): IRole {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: objectNames(options.name).role, namespace: options.namespace, labels: commonLabels(options.name) },
    rules: [],
  };
}

export function casRoleBinding(options: CasDeploymentOptions): IRoleBinding {
  const names = objectNames(options.name);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: names.roleBinding, namespace: options.namespace, labels: commonLabels(options.name) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: names.role },
    subjects: [{ kind: 'ServiceAccount', name: names.serviceAccount, namespace: options.namespace }],
  };
}
