import type { Command } from 'commander';
import { CasClient } from '../client/cas-client.js';
import { resolveCasUrl } from '../client/connect.js';
import { casHome, loadOrCreateIdentity, readPinnedCertificate } from '../client/home.js';

/** The flags that `withClientOptions` adds. */
export interface ClientFlags {
  cas?: string;
  output?: string;
}

/** Adds the `--cas` and `--output` options of a client subcommand, in that order. */
export function withClientOptions(command: Command): Command {
  return command
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--output <format>', 'text or json', 'text');
}

/**
 * Creates a client that checks the CAS certificate against the pin in CAS_HOME when `cas attest` has pinned one,
 * and accepts any certificate otherwise. `pinned` reports which, so the caller can show whether it was verified.
 */
export async function connectPinnedIfAny(casFlag: string | undefined): Promise<{ client: CasClient; casUrl: URL; pinned: boolean }> {
  const casUrl = resolveCasUrl(casFlag);
  const home = casHome();
  const identity = await loadOrCreateIdentity(home);
  const pinned = readPinnedCertificate(casUrl, home);
  const client = new CasClient({
    casUrl,
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    trust: pinned === undefined ? { kind: 'unverified' } : { kind: 'pinned', certificatePem: pinned },
  });
  return { client, casUrl, pinned: pinned !== undefined };
}
