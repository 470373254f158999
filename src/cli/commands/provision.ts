import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CasClient } from '../../client/cas-client.js';
import { outputFormat, printResult } from '../../client/output.js';
import { CasError, isCasError } from '../../errors/cas-error.js';
import { readOwnerSettingsFile } from '../../server/owner-settings.js';
import { connectPinnedIfAny } from '../client-options.js';

/**
 * `cas provision`: makes the caller's client identity the CAS owner. The one-time token authenticates the
 * request; the CAS certificate is checked against the pin when `cas attest` has already pinned one.
 */
export function register(program: Command): void {
  program
    .command('provision')
    .description('make this client identity (CAS_HOME) the owner of a new CAS; only the first call succeeds')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--token <token>', 'the one-time provisioning token')
    .option('--token-file <file>', 'read the provisioning token from this file (for example <data-dir>/provisioning-token)')
    .option('--owner-config <file>', 'CAS settings (YAML or JSON, see cas settings set) to apply right after provisioning; checked before the CAS is contacted')
    .option('--output <format>', 'text or json', 'text')
    .action(async (flags: { cas?: string; token?: string; tokenFile?: string; ownerConfig?: string; output?: string }) => {
      const format = outputFormat(flags.output);
      const token = readToken(flags);
      const ownerSettings = flags.ownerConfig === undefined ? undefined : readOwnerSettingsFile(flags.ownerConfig);
      const { client, casUrl } = await connectPinnedIfAny(flags.cas);
      const result = await client.provision(token);
      if (ownerSettings === undefined) {
        printResult(format, { url: casUrl.origin, ...result }, result.owner, `provisioned the CAS at ${casUrl.origin}; owner key hash:`);
        return;
      }
      let applied: Awaited<ReturnType<CasClient['replaceOwnerSettings']>>;
      try {
        applied = await client.replaceOwnerSettings(ownerSettings);
      } catch (error) {
        // The provisioning itself succeeded and cannot be repeated, so the message says how to finish.
        if (!isCasError(error)) throw error;
        throw new CasError(error.code, `provisioned the CAS at ${casUrl.origin} (owner key hash ${result.owner}), but applying ${flags.ownerConfig} failed: ${error.message}; run cas settings set ${flags.ownerConfig} --cas ${casUrl.origin}`, {
          cause: error,
          ...(error.details === undefined ? {} : { details: error.details }),
        });
      }
      const note = `provisioned the CAS at ${casUrl.origin} and applied ${flags.ownerConfig} (changed: ${applied.changed.join(', ') || 'nothing'}); owner key hash:`;
      printResult(format, { url: casUrl.origin, ...result, settings: applied.settings, changedSettings: applied.changed }, result.owner, note);
    });
}

function readToken(flags: { token?: string; tokenFile?: string }): string {
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new CasError('INVALID_ARGUMENT', 'give either --token or --token-file, not both');
  }
  if (flags.tokenFile !== undefined) {
    try {
      return readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (error) {
      throw new CasError(
        'INVALID_ARGUMENT',
        `cannot read the provisioning token file ${flags.tokenFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}; CAS deletes its generated token file once it is provisioned`,
        { cause: error },
      );
    }
  }
  if (flags.token !== undefined) return flags.token;
  throw new CasError('INVALID_ARGUMENT', 'missing provisioning token: pass --token TOKEN or --token-file FILE');
}
