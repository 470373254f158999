import type { Command } from 'commander';
import { DEFAULTS, ENV_VARS } from '../../config/defaults.js';
import { loadServerSettings, type ServerSettings } from '../../config/settings.js';
import { CasError } from '../../errors/cas-error.js';
import type { Logger } from '../../logging/logger.js';
import { runUntilStopped } from '../../server/run-until-stopped.js';

interface ServeFlags {
  dataDir?: string;
  listen?: string;
  platformDir?: string;
  mode?: string;
  snapshotInterval?: string;
  snapshotDir?: string;
  snapshots: boolean;
  snapshotKeep?: string;
  snapshotKeepDays?: string;
  casDatabaseRecovery?: string;
  auditLog?: string;
  provisioningTokenFile?: string;
  lease?: string;
  leaseDuration?: string;
  leaseName?: string;
  metricsListen?: string;
  metrics: boolean;
  auditWebhook?: string;
  auditWebhookQueue?: string;
  pcsUrl?: string;
  pccsUrl?: string;
  dcapApiKeyFile?: string;
  intelRootCa?: string;
  amdArk?: string;
  kdsUrl?: string;
}

/** `cas serve`: runs the CAS server until SIGTERM or SIGINT, then stops cleanly and exits 0. */
export function register(program: Command): void {
  program
    .command('serve')
    .description('run the CAS server (HTTPS) on the embedded defaults unless flags say otherwise')
    .option('--data-dir <dir>', `directory of cas.db, cas.key-store and the provisioning token (default ${DEFAULTS.dataDir})`)
    .option('--listen <host:port>', `address to listen on; port 0 picks a free port (default ${DEFAULTS.listenHost}:${DEFAULTS.listenPort})`)
    .option('--platform-dir <dir>', 'directory of this machine\'s platform key (default ~/.cas-platform)')
    .option('--mode <mode>', `simulation or hardware (default ${DEFAULTS.mode})`)
    .option('--snapshot-interval <seconds>', `seconds between database snapshots (default ${DEFAULTS.snapshotIntervalSeconds})`)
    .option('--snapshot-dir <dir>', `directory for snapshots (default <data-dir>/${DEFAULTS.snapshotSubdir})`)
    .option('--no-snapshots', 'do not take snapshots')
    .option('--snapshot-keep <count>', `keep the newest COUNT snapshots (default ${DEFAULTS.snapshotKeepLast})`)
    .option('--snapshot-keep-days <days>', `also keep the newest snapshot of each of the last DAYS days (default ${DEFAULTS.snapshotKeepDays})`)
    .option('--cas-database-recovery <snapshot>', 'restore this snapshot directory into --data-dir (the replaced files are moved aside) and start from it')
    .option('--audit-log <file>', `audit log file (default <data-dir>/${DEFAULTS.auditSubdir}/cas_audit.log)`)
    .option('--provisioning-token-file <file>', 'read the one-time provisioning token from this file instead of generating one')
    .option('--lease <kind>', `primary lease: lockfile (in the data directory), kubernetes (a Lease object) or none (default ${DEFAULTS.lease}); see docs/high-availability.md`)
    .option('--lease-duration <seconds>', `lease period: a primary that cannot renew within it stops serving and a standby takes over (default ${DEFAULTS.leaseDurationSeconds})`)
    .option('--lease-name <name>', `name of the Kubernetes Lease object with --lease kubernetes (default ${DEFAULTS.leaseName})`)
    .option('--metrics-listen <host:port>', `address of the Prometheus metrics endpoint (plain HTTP, GET /metrics) (default the --listen host on port ${DEFAULTS.metricsPort}, or port 0 when --listen uses port 0); see docs/operations.md`)
    .option('--no-metrics', 'do not serve Prometheus metrics')
    .option('--audit-webhook <url>', 'POST every audit entry as JSON to this http or https URL, with retries and a bounded queue; see docs/operations.md')
    .option('--audit-webhook-queue <entries>', 'audit entries the webhook queue holds before it drops new ones (default 10000)')
    .option('--pcs-url <url>', 'Intel PCS base URL for SGX and TDX collateral (default https://api.trustedservices.intel.com)')
    .option('--pccs-url <url>', 'take SGX and TDX collateral from this PCCS instead of Intel PCS')
    .option('--dcap-api-key-file <file>', `file holding the Intel DCAP API key (default: the ${ENV_VARS.dcapApiKey} environment variable); the key is never a flag, so it does not show in ps`)
    .option('--intel-root-ca <file>', 'PEM of the trusted Intel SGX Root CA (default: the embedded Intel certificate)')
    .option('--amd-ark <file>', 'PEM of the pinned AMD ARK of your product line; without it SEV-SNP evidence is rejected')
    .option('--kds-url <url>', 'AMD KDS base URL for VCEKs (default https://kdsintf.amd.com)')
    .action(async (flags: ServeFlags) => {
      const settings = loadServerSettings({
        ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
        ...(flags.listen === undefined ? {} : { listen: flags.listen }),
        ...(flags.platformDir === undefined ? {} : { platformDir: flags.platformDir }),
        ...(flags.mode === undefined ? {} : { mode: flags.mode }),
        ...(flags.snapshotInterval === undefined ? {} : { snapshotIntervalSeconds: flags.snapshotInterval }),
        ...(flags.snapshotDir === undefined ? {} : { snapshotDir: flags.snapshotDir }),
        snapshotsEnabled: flags.snapshots,
        ...(flags.snapshotKeep === undefined ? {} : { snapshotKeepLast: flags.snapshotKeep }),
        ...(flags.snapshotKeepDays === undefined ? {} : { snapshotKeepDays: flags.snapshotKeepDays }),
        ...(flags.auditLog === undefined ? {} : { auditLog: flags.auditLog }),
        ...(flags.provisioningTokenFile === undefined ? {} : { provisioningTokenFile: flags.provisioningTokenFile }),
        ...(flags.lease === undefined ? {} : { lease: flags.lease }),
        ...(flags.leaseDuration === undefined ? {} : { leaseDurationSeconds: flags.leaseDuration }),
        ...(flags.leaseName === undefined ? {} : { leaseName: flags.leaseName }),
        ...(flags.pcsUrl === undefined ? {} : { pcsUrl: flags.pcsUrl }),
        ...(flags.pccsUrl === undefined ? {} : { pccsUrl: flags.pccsUrl }),
        ...(flags.dcapApiKeyFile === undefined ? {} : { dcapApiKeyFile: flags.dcapApiKeyFile }),
        ...(flags.intelRootCa === undefined ? {} : { intelRootCaFile: flags.intelRootCa }),
        ...(flags.amdArk === undefined ? {} : { amdArkFile: flags.amdArk }),
        ...(flags.kdsUrl === undefined ? {} : { kdsUrl: flags.kdsUrl }),
      });
      // Loaded here, so client commands do not pay for loading fastify and the server modules.
      const { casLogger, createCasServer } = await import('../../server/cas-server.js');
      const logger = casLogger(settings);
      const { startProcessMetrics } = await import('../../metrics/serve-metrics.js');
      const metrics = await startProcessMetrics({ flag: flags.metricsListen, enabled: flags.metrics, settings, logger });
      const { startProcessWebhook } = await import('../../webhook/serve-webhook.js');
      let webhook: { stop(): Promise<void> } | undefined;
      try {
        webhook = startProcessWebhook({ url: flags.auditWebhook, capacity: flags.auditWebhookQueue, logger, metrics: metrics.metrics });
        await serve(settings, flags, logger, createCasServer).catch((error: unknown) => {
          throw explainListenError(error, settings);
        });
      } finally {
        await webhook?.stop();
        await metrics.stop();
      }
    });
}

/** Rewords a failed listen on the HTTPS address as an error that names the flag to change. */
function explainListenError(error: unknown, settings: ServerSettings): unknown {
  if (error instanceof CasError || !(error instanceof Error)) {
    return error;
  }
  const { code, syscall } = error as NodeJS.ErrnoException;
  if (syscall !== 'listen' || code === undefined) {
    return error;
  }
  const where = `${settings.listen.host}:${settings.listen.port}`;
  const reason = code === 'EADDRINUSE' ? 'another program already listens there' : error.message;
  return new CasError('CONFIG_INVALID', `the CAS cannot listen on ${where} (${code}: ${reason}); choose another address with --listen HOST:PORT`, {
    cause: error,
  });
}

async function serve(
  settings: ServerSettings,
  flags: ServeFlags,
  logger: Logger,
  createCasServer: (typeof import('../../server/cas-server.js'))['createCasServer'],
): Promise<void> {
  if (settings.lease !== 'none') {
    const { serveWithLease } = await import('../../ha/serve-with-lease.js');
    await serveWithLease(settings, logger, flags.casDatabaseRecovery === undefined ? {} : { recoverySnapshot: flags.casDatabaseRecovery });
    return;
  }
  if (flags.casDatabaseRecovery !== undefined) {
    const { recoverFromSnapshot } = await import('../../snapshots/recovery.js');
    await recoverFromSnapshot(flags.casDatabaseRecovery, settings, logger);
  }
  let reportFatal: (error: CasError) => void = () => undefined;
  const fatal = new Promise<CasError>((resolve) => {
    reportFatal = resolve;
  });
  const server = await createCasServer({ settings, logger, onFatal: (error) => reportFatal(error) });
  await server.listen();

  await runUntilStopped(server, fatal, logger);
}
