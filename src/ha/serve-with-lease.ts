import { readFileSync } from 'node:fs';
import type { ServerSettings } from '../config/settings.js';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { runUntilStopped } from '../server/run-until-stopped.js';
import { startHighAvailableCas } from './ha-serve.js';
import type { LeaseStore } from './lease.js';
import { LockFileLeaseStore } from './lockfile-lease.js';

/** File of the pod's namespace in a Kubernetes service account mount. */
const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export interface ServeWithLeaseOptions {
  /**
   * `--cas-database-recovery SNAPSHOT`: restored once this instance is the lease holder, never before. Without
   * it, the newest valid snapshot is restored when the database is missing (see volume-recovery.ts).
   */
  recoverySnapshot?: string;
}

/**
 * `cas serve --lease lockfile|kubernetes`: runs the CAS as standby or primary until SIGTERM or SIGINT,
 * then releases the lease (so a standby takes over at once) and closes the database. Rejects with the
 * error when the CAS cannot go on, for example when this platform has no key store entry.
 */
export async function serveWithLease(settings: ServerSettings, logger: Logger, options: ServeWithLeaseOptions = {}): Promise<void> {
  const store = await createLeaseStore(settings);
  let reportFatal: (error: CasError) => void = () => undefined;
  const fatal = new Promise<CasError>((resolve) => {
    reportFatal = resolve;
  });

  const recoverySnapshot = options.recoverySnapshot;
  const cas = await startHighAvailableCas({
    settings,
    logger,
    store,
    leaseDurationMs: settings.leaseDurationSeconds * 1000,
    takeOverFromDeadLocalHolder: settings.lease === 'lockfile',
    onFatal: (error) => reportFatal(error),
    ...(podInstanceId() === undefined ? {} : { instanceId: podInstanceId() }),
    // Runs once this instance is the lease holder, so no other instance uses the data directory meanwhile.
    beforeFirstOpen: async () => {
      if (recoverySnapshot !== undefined) {
        const { recoverFromSnapshot } = await import('../snapshots/recovery.js');
        await recoverFromSnapshot(recoverySnapshot, settings, logger);
        return;
      }
      const { restoreIfDatabaseLost } = await import('./volume-recovery.js');
      await restoreIfDatabaseLost(settings, logger);
    },
  });

  await runUntilStopped(cas, fatal, logger);
}

/** Creates the lease store that `--lease` selects. */
export async function createLeaseStore(settings: ServerSettings): Promise<LeaseStore> {
  if (settings.lease === 'lockfile') return LockFileLeaseStore.forDataDir(settings.dataDir);
  if (settings.lease !== 'kubernetes') {
    throw new CasError('INTERNAL', `unsupported --lease value "${settings.lease}"; expected lockfile or kubernetes`);
  }
  const { KubeConfig } = await import('@kubernetes/client-node');
  const { KubernetesLeaseStore } = await import('./kubernetes-lease.js');
  const config = new KubeConfig();
  config.loadFromDefault();
  return new KubernetesLeaseStore(config, podNamespace(), settings.leaseName);
}

/**
 * Returns the lease holder identity of a Kubernetes pod, `POD_NAME/POD_UID`. A StatefulSet recreates its primary
 * under the same name, so the name alone would let a new pod retake the lease of a predecessor that may still
 * run (after a forced delete) without waiting for the lease to expire. The UID differs for every pod.
 */
function podInstanceId(): string | undefined {
  const name = process.env['POD_NAME'];
  if (name === undefined) return undefined;
  const uid = process.env['POD_UID'];
  return uid === undefined || uid === '' ? name : `${name}/${uid}`;
}

/** Returns the namespace for the Lease: POD_NAMESPACE (downward API), else the service account's namespace file. */
function podNamespace(): string {
  const fromEnvironment = process.env['POD_NAMESPACE'];
  if (fromEnvironment !== undefined && fromEnvironment !== '') return fromEnvironment;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim();
  } catch (error) {
    throw new CasError(
      'CONFIG_INVALID',
      `--lease kubernetes needs the pod's namespace: set POD_NAMESPACE from the downward API or run with a service account mounted at ${SERVICE_ACCOUNT_NAMESPACE_FILE}`,
      { cause: error },
    );
  }
}
