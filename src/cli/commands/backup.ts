import type { Command } from 'commander';
import { BackupClient } from '../../backup/backup-client.js';
import { outputFormat, printResult, type OutputFormat } from '../../client/output.js';
import { DEFAULTS } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';
import { openPlatform } from '../../store/platform.js';
import { withClientOptions, type ClientFlags } from '../client-options.js';

/**
 * `cas backup register|list|remove|authorize-registrar|revoke-registrar`: manage the platforms that may open
 * the database (backup targets) and the registrar keys that may register them.
 */
export function register(program: Command): void {
  const backup = program.command('backup').description('register, list and remove backup targets (CAS owner; registering also for authorised registrar keys)');

  backup
    .command('register')
    .description("register this machine's platform as a backup target: the CAS wraps the database key for its platform key")
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--platform-dir <dir>', 'directory of the platform key to register; created on first use (default ~/.cas-platform)')
    .option('--mode <mode>', 'platform mode: simulation or hardware', DEFAULTS.mode)
    .option('--output <format>', 'text or json', 'text')
    .action(async (flags: ClientFlags & { platformDir?: string; mode: string }) => {
      const format = outputFormat(flags.output);
      if (flags.mode !== 'simulation' && flags.mode !== 'hardware') {
        throw new CasError('INVALID_ARGUMENT', `invalid --mode "${flags.mode}"; expected simulation or hardware`);
      }
      const platform = await openPlatform({ mode: flags.mode, platformDir: flags.platformDir ?? DEFAULTS.platformDir() });
      const client = await BackupClient.connect(flags.cas);
      const result = await client.register(platform);
      const note = result.added ? `registered platform ${result.platform.platformId} as a backup target` : `platform ${result.platform.platformId} was already registered`;
      printResult(format, result, result.platform.platformId, note);
    });

  withClientOptions(backup.command('list').description('list the platforms whose key store entries let them open the database, and removed ones'))
    .action(async (flags: ClientFlags) => {
      const format = outputFormat(flags.output);
      const client = await BackupClient.connect(flags.cas);
      const result = await client.list();
      const lines = result.platforms.map((p) => `${p.platformId}\t${p.registeredAt}\t${p.evidenceType}${p.primary ? '\tprimary' : ''}`);
      const removed = result.removed.map((r) => `${r.platformId}\tremoved ${r.removedAt}`);
      const registrars = result.registrars.map((r) => `registrar ${r.keyHash}\tauthorised ${r.authorizedAt}`);
      printResult(format, result, [...lines, ...removed, ...registrars].join('\n'));
    });

  withClientOptions(backup.command('authorize-registrar <key-hash>').description('allow another client key (SHA-256 of its public key) to register backup platforms, and nothing else'))
    .action(async (keyHash: string, flags: ClientFlags) => {
      const { format, client } = await connectForRegistrar(keyHash, flags);
      const result = await client.authorizeRegistrar(keyHash);
      printResult(format, result, undefined, result.added ? `authorised registrar ${keyHash}` : `registrar ${keyHash} was already authorised`);
    });

  withClientOptions(backup.command('revoke-registrar <key-hash>').description('withdraw a registrar key; the platforms it registered stay registered'))
    .action(async (keyHash: string, flags: ClientFlags) => {
      const { format, client } = await connectForRegistrar(keyHash, flags);
      await client.revokeRegistrar(keyHash);
      printResult(format, { keyHash, revoked: true }, undefined, `revoked registrar ${keyHash}`);
    });

  withClientOptions(backup.command('remove <platform-id>').description('withdraw a backup target: its key store entry is deleted and the removal recorded in the database'))
    .action(async (platformId: string, flags: ClientFlags) => {
      const format = outputFormat(flags.output);
      if (!/^[0-9a-f]{32}$/.test(platformId)) {
        throw new CasError('INVALID_ARGUMENT', `invalid platform id "${platformId}"; expected 32 lower-case hex characters as cas backup list shows them`);
      }
      const client = await BackupClient.connect(flags.cas);
      const result = await client.remove(platformId);
      printResult(format, result, undefined, `removed platform ${platformId}; snapshots taken before ${result.removedAt} still contain its key store entry`);
    });
}

/** Checks the output format and key hash of a registrar subcommand before connecting to the CAS. */
async function connectForRegistrar(keyHash: string, flags: ClientFlags): Promise<{ format: OutputFormat; client: BackupClient }> {
  const format = outputFormat(flags.output);
  if (!/^[0-9a-f]{64}$/.test(keyHash)) {
    throw new CasError('INVALID_ARGUMENT', `invalid key hash "${keyHash}"; expected the 64 lower-case hex characters of a client key's SHA-256`);
  }
  return { format, client: await BackupClient.connect(flags.cas) };
}
