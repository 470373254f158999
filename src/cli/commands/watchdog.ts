import type { Command } from 'commander';
import { DEFAULTS } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';

interface WatchdogFlags {
  namespace?: string;
  kubeconfig?: string;
  context?: string;
  pod: string;
  leaseName: string;
  notReadyDelay: string;
  interval: string;
}

/** Default delay before a primary on a NotReady node is replaced; see docs/high-availability.md. */
export const DEFAULT_NOT_READY_DELAY_SECONDS = 60;

/**
 * `cas watchdog`: the failover watchdog that runs in the cluster beside the CAS StatefulSet. It deletes the
 * primary pod once its node has been NotReady for `--not-ready-delay` seconds and the primary lease expired,
 * so the StatefulSet controller recreates the pod on another node.
 */
export function register(program: Command): void {
  program
    .command('watchdog')
    .description('replace the CAS primary pod when its node is NotReady and its lease expired (runs in the cluster)')
    .requiredOption('--pod <name>', 'name of the primary pod, NAME-0 of the CAS StatefulSet')
    .option('-n, --namespace <namespace>', "namespace of the CAS (default: the kubeconfig context's, in a pod its own)")
    .option('--kubeconfig <file>', 'kubeconfig file (default: KUBECONFIG, ~/.kube/config, else the in-cluster service account)')
    .option('--context <name>', 'kubeconfig context')
    .option('--lease-name <name>', 'name of the primary Lease that cas serve --lease kubernetes renews', DEFAULTS.leaseName)
    .option('--not-ready-delay <seconds>', 'seconds a node must be NotReady before its primary pod is deleted', String(DEFAULT_NOT_READY_DELAY_SECONDS))
    .option('--interval <seconds>', 'seconds between two observations', '5')
    .action(async (flags: WatchdogFlags) => {
      const notReadyDelaySeconds = positiveInteger(flags.notReadyDelay, '--not-ready-delay');
      const intervalSeconds = positiveInteger(flags.interval, '--interval');
      const { loadKubeConfig } = await import('../../kubernetes/cluster/kube-config.js');
      const { FailoverWatchdog } = await import('../../kubernetes/watchdog/watchdog.js');
      const { createLogger } = await import('../../logging/logger.js');

      const kube = loadKubeConfig({ kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace ?? process.env['POD_NAMESPACE'] });
      const logger = createLogger({ name: 'cas-watchdog' });
      const watchdog = new FailoverWatchdog({
        config: kube.config,
        namespace: kube.namespace,
        podName: flags.pod,
        leaseName: flags.leaseName,
        notReadyDelaySeconds,
        intervalSeconds,
        logger,
      });
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        logger.info({ signal }, 'received signal');
        stop.abort();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      await watchdog.run(stop.signal);
    });
}

function positiveInteger(text: string, flag: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new CasError('INVALID_ARGUMENT', `invalid ${flag} "${text}"; expected a whole number of seconds of at least 1`);
  }
  return value;
}
