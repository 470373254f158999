import type { Command } from 'commander';
import { commandToRun, runService, workingDirectory, writeInjectionFiles } from '../../client/run-service.js';
import { addEvidenceOptions } from '../evidence-options.js';
import { fetchServiceConfiguration, type ServiceFlags } from '../service-configuration.js';

/**
 * `cas run`: attests, fetches the service's configuration, writes its injection files and runs its
 * command with exactly the configured environment. Exits with the command's exit code.
 */
export function register(program: Command): void {
  const command = program
    .command('run')
    .description('attest as a service, write its injection files and run its command with its configured environment')
    .requiredOption('--session <name>', 'session name')
    .requiredOption('--service <name>', 'service name in the session')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--platform-dir <dir>', 'directory of this machine\'s platform key, which signs the simulated evidence (default ~/.cas-platform)')
    .argument('[args...]', 'after --: arguments that fill @@1, @@2, ...; for a service without command, the command to run (untrusted input)');
  addEvidenceOptions(command)
    .action(async (args: string[], flags: ServiceFlags) => {
      const configuration = await fetchServiceConfiguration(flags, args);
      const argv = commandToRun(configuration, args);
      // Checked first, so a missing working directory leaves no injection files behind.
      writeInjectionFiles(configuration, workingDirectory(configuration));
      process.exitCode = await runService(argv, configuration);
    });
}
