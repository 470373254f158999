import type { CasMetrics } from './cas-metrics.js';

let current: CasMetrics | undefined;

/**
 * Sets the metrics of this `cas serve` process. A high-availability process creates a new CAS server
 * each time it becomes primary, deep inside the lease loop; each of them reads the metrics from here
 * unless its caller passes `metrics` explicitly. Tests that create servers in-process leave it unset.
 */
export function setProcessMetrics(metrics: CasMetrics | undefined): void {
  current = metrics;
}

export function processMetrics(): CasMetrics | undefined {
  return current;
}
