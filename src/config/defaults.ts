import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Names, paths and ports that the server uses and that the Kubernetes manifests must agree with. The
 * manifest builders and their tests import these values instead of repeating the strings.
 */
export const FILE_NAMES = {
  database: 'cas.db',
  keyStore: 'cas.key-store',
  provisioningToken: 'provisioning-token',
  auditLog: 'cas_audit.log',
  platformKey: 'platform.key',
} as const;

export const DEFAULTS = {
  dataDir: './cas-data',
  listenHost: '127.0.0.1',
  listenPort: 8081,
  /** Prometheus metrics listen on their own port, never on the API port. */
  metricsPort: 9091,
  mode: 'simulation' as 'simulation' | 'hardware',
  snapshotIntervalSeconds: 60,
  /** Snapshot retention: keep the newest 10 snapshots and the newest one of each of the last 7 days. */
  snapshotKeepLast: 10,
  snapshotKeepDays: 7,
  /** Subdirectory of the data directory for snapshots when --snapshot-dir is not given. */
  snapshotSubdir: 'snapshots',
  /** The audit log is `<data-dir>/audit/cas_audit.log` unless --audit-log names another file. */
  auditSubdir: 'audit',
  /** High availability: a lock-file lease in the data directory, renewed within 15 s as in client-go. */
  lease: 'lockfile' as 'lockfile' | 'kubernetes' | 'none',
  leaseDurationSeconds: 15,
  leaseName: 'cas-primary',
  platformDir: (): string => join(homedir(), '.cas-platform'),
  casHome: (): string => process.env['CAS_HOME'] ?? join(homedir(), '.cas'),
} as const;

/** Health endpoints for Kubernetes probes. Documented in docs/api.md. */
export const HEALTH_PATHS = {
  startup: '/healthz/startup',
  liveness: '/healthz/live',
  readiness: '/healthz/ready',
} as const;

/** Paths inside the container of the Kubernetes deployment. */
export const DEPLOYMENT_PATHS = {
  dataDir: '/var/lib/cas',
  snapshotDir: '/var/mnt/cas-database-snapshots',
  auditDir: '/var/log/cas/audit',
  auditLog: '/var/log/cas/audit/cas_audit.log',
  platformDir: '/var/run/cas-platform',
  casHome: '/var/lib/cas-client',
} as const;

/**
 * Environment variables that `cas serve` reads. The Kubernetes manifests set them from Secrets
 * (secretKeyRef), so secret values never appear in a pod spec or on a command line.
 */
export const ENV_VARS = {
  /** API key for Intel's Provisioning Certification Service (DCAP collateral). */
  dcapApiKey: 'CAS_DCAP_API_KEY',
} as const;
