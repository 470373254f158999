import type { IService } from 'kubernetes-models/v1/Service';
import { DEFAULTS } from '../../config/defaults.js';
import type { CasDeploymentOptions } from './options.js';
import { commonLabels, METRICS_PATH, objectNames, PORT_NAMES, selectorLabels } from './names.js';

/** Builds the Service of the primary's API and metrics ports, annotated for Prometheus scraping. */
export function casService(options: CasDeploymentOptions): IService {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: objectNames(options.name).service,
      namespace: options.namespace,
      labels: commonLabels(options.name, 'primary'),
      annotations: {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(DEFAULTS.metricsPort),
        'prometheus.io/path': METRICS_PATH,
      },
    },
    spec: {
      type: options.serviceType,
      selector: selectorLabels(options.name, 'primary'),
      // Only a ready primary receives requests (the Kubernetes default, stated because it matters here).
      publishNotReadyAddresses: false,
      ports: [
        { name: PORT_NAMES.api, port: DEFAULTS.listenPort, targetPort: PORT_NAMES.api, protocol: 'TCP' },
        { name: PORT_NAMES.metrics, port: DEFAULTS.metricsPort, targetPort: PORT_NAMES.metrics, protocol: 'TCP' },
      ],
    },
  };
}
