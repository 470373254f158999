import { existsSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { CasError } from '../../errors/cas-error.js';

export interface KubeConfigFlags {
  /** --kubeconfig: one file, which then replaces KUBECONFIG and ~/.kube/config, as in kubectl. */
  kubeconfig?: string | undefined;
  /** --context: a context of the loaded configuration. */
  context?: string | undefined;
  /** -n/--namespace: wins over the context's namespace. */
  namespace?: string | undefined;
}

export interface ResolvedKubeConfig {
  config: KubeConfig;
  namespace: string;
  contextName: string;
  /** The API server URL of the current context. */
  server: string;
}

/**
 * Loads the kubeconfig as kubectl does: --kubeconfig, else the files in KUBECONFIG (merged), else
 * ~/.kube/config, else the in-cluster service account. --context selects a context; the namespace is
 * -n, else the context's namespace, else `default`.
 */
export function loadKubeConfig(flags: KubeConfigFlags): ResolvedKubeConfig {
  const config = new KubeConfig();
  if (flags.kubeconfig !== undefined) {
    if (!existsSync(flags.kubeconfig)) {
      throw new CasError('INVALID_ARGUMENT', `kubeconfig file "${flags.kubeconfig}" not found`);
    }
    config.loadFromFile(flags.kubeconfig);
  } else {
    config.loadFromDefault();
  }

  if (flags.context !== undefined) {
    if (config.getContextObject(flags.context) === null) {
      throw new CasError('INVALID_ARGUMENT', `context "${flags.context}" does not exist in the kubeconfig`);
    }
    config.setCurrentContext(flags.context);
  }

  const contextName = config.getCurrentContext();
  const context = config.getContextObject(contextName);
  const namespace = flags.namespace ?? context?.namespace ?? 'default';
  const server = config.getCurrentCluster()?.server ?? '';
  return { config, namespace, contextName, server };
}

/**
 * The namespace for --dry-run, which must not contact the cluster: -n, else the current context's namespace
 * when a kubeconfig can be read, else `default`.
 */
export function namespaceWithoutCluster(flags: KubeConfigFlags): string {
  if (flags.namespace !== undefined) return flags.namespace;
  try {
    return loadKubeConfig(flags).namespace;
  } catch {
    return 'default';
  }
}
