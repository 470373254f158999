import type { Command } from 'commander';
import { stringify } from 'yaml';
import { connectPinned } from '../../client/connect.js';
import { outputFormat, printResult } from '../../client/output.js';
import { readOwnerSettingsFile } from '../../server/owner-settings.js';

interface SettingsFlags {
  cas?: string;
  output?: string;
}

/**
 * `cas settings get|set`: read or replace the CAS settings that only the CAS owner may change. The settings
 * are listed in docs/operations.md.
 */
export function register(program: Command): void {
  const settings = program.command('settings').description('read or replace the CAS settings (CAS owner only)');

  settings
    .command('get')
    .description('print the effective CAS settings, defaults included')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--output <format>', 'text (YAML) or json', 'text')
    .action(async (flags: SettingsFlags) => {
      const format = outputFormat(flags.output);
      const { client } = await connectPinned(flags.cas);
      const result = await client.ownerSettings();
      printResult(format, result, stringify(result.settings));
    });

  settings
    .command('set <file>')
    .description('replace the CAS settings with a YAML or JSON file; keys left out return to their defaults')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--output <format>', 'text (YAML) or json', 'text')
    .action(async (file: string, flags: SettingsFlags) => {
      const format = outputFormat(flags.output);
      const document = readOwnerSettingsFile(file);
      const { client } = await connectPinned(flags.cas);
      const result = await client.replaceOwnerSettings(document);
      const note = result.changed.length === 0 ? 'CAS settings unchanged' : `changed CAS settings: ${result.changed.join(', ')}`;
      printResult(format, result, stringify(result.settings), note);
    });
}
