import type { Command } from 'commander';
import { connectPinned } from '../../client/connect.js';
import { fetchConfiguration } from '../../client/fetch-configuration.js';
import { DEFAULTS } from '../../config/defaults.js';
import { addEvidenceOptions, evidenceOptions, reportEvidenceSource, type EvidenceFlags } from '../evidence-options.js';

/** `cas config fetch`: attests and prints a service's configuration as JSON (for debugging and tests). */
export function register(program: Command): void {
  const config = program.command('config').description('fetch service configurations');
  const fetch = config
    .command('fetch')
    .description('attest as a service and print its configuration, secrets included, as JSON on stdout')
    .requiredOption('--session <name>', 'session name')
    .requiredOption('--service <name>', 'service name in the session')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--platform-dir <dir>', 'directory of this machine\'s platform key, which signs the simulated evidence (default ~/.cas-platform)')
    .option('--output <format>', 'json (the only format)', 'json')
    .argument('[args...]', 'host arguments that fill @@1, @@2, ... (untrusted input)');
  addEvidenceOptions(fetch)
    .action(async (args: string[], flags: { session: string; service: string; cas?: string; platformDir?: string } & EvidenceFlags) => {
      const { client } = await connectPinned(flags.cas);
      const configuration = await fetchConfiguration(client, {
        session: flags.session,
        service: flags.service,
        platformDir: flags.platformDir ?? DEFAULTS.platformDir(),
        hostArguments: args,
        hostEnvironment: hostEnvironment(),
        evidence: evidenceOptions(flags),
        onEvidence: reportEvidenceSource,
      });
      process.stdout.write(JSON.stringify(configuration, null, 2) + '\n');
    });
}

/** Returns the host environment as strings: the source of `\@\@NAME` values, which are untrusted input. */
export function hostEnvironment(): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) environment[key] = value;
  return environment;
}
