import { connectPinned } from '../client/connect.js';
import { fetchConfiguration } from '../client/fetch-configuration.js';
import type { ServiceConfiguration } from '../client/cas-client.js';
import { DEFAULTS } from '../config/defaults.js';
import { evidenceOptions, reportEvidenceSource, type EvidenceFlags } from './evidence-options.js';

/** The flags that `cas config fetch` and `cas run` share. */
export type ServiceFlags = { session: string; service: string; cas?: string; platformDir?: string } & EvidenceFlags;

/**
 * Attests as the service over a connection to the pinned CAS and returns its configuration. `hostArguments`
 * fill `@@1`, `@@2`, ... and the host environment supplies `\@\@NAME` values: both are untrusted input.
 */
export async function fetchServiceConfiguration(flags: ServiceFlags, hostArguments: string[]): Promise<ServiceConfiguration> {
  const { client } = await connectPinned(flags.cas);
  return fetchConfiguration(client, {
    session: flags.session,
    service: flags.service,
    platformDir: flags.platformDir ?? DEFAULTS.platformDir(),
    hostArguments,
    hostEnvironment: hostEnvironment(),
    evidence: evidenceOptions(flags),
    onEvidence: reportEvidenceSource,
  });
}

/** Returns the host environment as strings: the source of `\@\@NAME` values, which are untrusted input. */
export function hostEnvironment(): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) environment[key] = value;
  return environment;
}
