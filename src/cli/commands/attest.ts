import type { Command } from 'commander';
import { attestCas } from '../../client/attest.js';
import { outputFormat, printResult } from '../../client/output.js';

/** `cas attest`: verifies the CAS's evidence and pins its certificate in CAS_HOME. */
export function register(program: Command): void {
  program
    .command('attest')
    .description('verify the evidence of a CAS and pin its certificate in CAS_HOME for every later command')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--accept-simulation', 'accept a CAS in simulation mode, whose evidence proves nothing (development and tests only)', false)
    .option('--output <format>', 'text or json', 'text')
    .action(async (flags: { cas?: string; acceptSimulation: boolean; output?: string }) => {
      const format = outputFormat(flags.output);
      const result = await attestCas({ ...(flags.cas === undefined ? {} : { cas: flags.cas }), acceptSimulation: flags.acceptSimulation });
      const note =
        result.mode === 'simulation'
          ? `WARNING: the CAS at ${result.url} is SIMULATED; its evidence proves nothing. Pinned certificate SHA-256:`
          : `attested the CAS at ${result.url}; pinned certificate SHA-256:`;
      printResult(format, result, result.certificateSha256, note);
    });
}
