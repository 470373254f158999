import { scratchHome } from './plugin-process.js';
import { TestApiServer, type RecordedRequest } from './test-api-server.js';

/** The namespace that plugin tests deploy to; the fixture creates it with the image pull Secret. */
export const TEST_NAMESPACE = 'confidential';

/** A test API server with helpers that plugin tests share. */
export interface PluginFixture {
  api: TestApiServer;
  /** Resets the cluster to the namespaces and, unless `pullSecret` is false, the image pull Secret. */
  reset(options?: { pullSecret?: boolean }): void;
  /** Returns a scratch home with a kubeconfig for the test API server, and the environment that uses it. */
  environment(): { env: Record<string, string>; home: ReturnType<typeof scratchHome> };
  /** Returns every recorded request that is not a GET. */
  writes(): RecordedRequest[];
}

export async function startPluginFixture(): Promise<PluginFixture> {
  const api = await TestApiServer.start();
  return {
    api,
    reset(options = {}) {
      api.reset();
      api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: TEST_NAMESPACE } });
      api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
      if (options.pullSecret !== false) {
        api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cas-image-pull', namespace: TEST_NAMESPACE }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': 'e30=' } });
      }
    },
    environment() {
      const home = scratchHome(api.kubeconfig('default'));
      return { home, env: { HOME: home.dir, KUBECONFIG: home.kubeconfigPath, CAS_HOME: home.casHome } };
    },
    writes() {
      return api.requests.filter((request) => request.method !== 'GET');
    },
  };
}
