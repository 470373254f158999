import type { Command } from 'commander';
import { addEvidenceOptions } from '../evidence-options.js';
import { fetchServiceConfiguration, type ServiceFlags } from '../service-configuration.js';

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
    .action(async (args: string[], flags: ServiceFlags) => {
      const configuration = await fetchServiceConfiguration(flags, args);
      process.stdout.write(JSON.stringify(configuration, null, 2) + '\n');
    });
}
