import { DEFAULTS } from '../../config/defaults.js';
import { DEFAULT_STORAGE, type CasDeploymentOptions } from './options.js';

/** A parsed manifest object, read field by field in assertions. */
export type Json = Record<string, any>;

/**
 * Returns the deployment options the manifest tests share: a simulation-mode CAS named mycas in the
 * namespace confidential, with an image pull Secret and default storage. Each call returns a fresh
 * object, so a test may change its copy.
 */
export function testDeploymentOptions(overrides: Partial<CasDeploymentOptions> = {}): CasDeploymentOptions {
  return {
    name: 'mycas',
    namespace: 'confidential',
    image: 'registry.example/cas:1.2.3',
    imagePullSecret: 'cas-image-pull',
    mode: 'simulation',
    snapshotIntervalSeconds: DEFAULTS.snapshotIntervalSeconds,
    storageClass: undefined,
    serviceType: 'ClusterIP',
    storage: { ...DEFAULT_STORAGE },
    nodeSelector: {},
    platformHostPath: '/var/lib/cas-platform',
    ...overrides,
  };
}
