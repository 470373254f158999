import type { KubeObject } from './index.js';
import { commonLabels, METRICS_PATH, objectNames, PORT_NAMES } from './names.js';
import type { CasDeploymentOptions } from './options.js';

/** API group and version of the Prometheus Operator's ServiceMonitor. */
export const SERVICE_MONITOR_GROUP = 'monitoring.coreos.com';
export const SERVICE_MONITOR_API_VERSION = `${SERVICE_MONITOR_GROUP}/v1`;

/** Seconds between two scrapes; the snapshot age and lease gauges change on that scale. */
const SCRAPE_INTERVAL = '30s';

/**
 * Builds a ServiceMonitor, with which a Prometheus Operator scrapes the `metrics` port of the CAS Service
 * (plain HTTP, see docs/operations.md). The plugin renders it only when the cluster serves
 * monitoring.coreos.com/v1, because applying it elsewhere fails.
 */
export function casServiceMonitor(options: CasDeploymentOptions): KubeObject {
  return {
    apiVersion: SERVICE_MONITOR_API_VERSION,
    kind: 'ServiceMonitor',
    metadata: { name: objectNames(options.name).service, namespace: options.namespace, labels: commonLabels(options.name, 'primary') },
    spec: {
      selector: { matchLabels: commonLabels(options.name, 'primary') },
      namespaceSelector: { matchNames: [options.namespace] },
      endpoints: [{ port: PORT_NAMES.metrics, path: METRICS_PATH, scheme: 'http', interval: SCRAPE_INTERVAL }],
    },
  };
}
