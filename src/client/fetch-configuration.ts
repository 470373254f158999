import { openPlatform } from '../store/index.js';
import { createSimulatedEvidence } from '../server/evidence/simulation.js';
import { createSelfSignedCertificate, spkiOfCertificate } from '../tls/certificates.js';
import type { CasClient, ServiceConfiguration } from './cas-client.js';

export interface FetchConfigurationOptions {
  session: string;
  service: string;
  /** Directory of this machine's platform key, which signs the simulated evidence. */
  platformDir: string;
  /** Untrusted host input: fills `@@1`, `@@2`, ... */
  hostArguments: string[];
  /** Untrusted host input: values for `\@\@NAME` environment keys. */
  hostEnvironment: Record<string, string>;
}

/**
 * Attests and fetches a service's configuration: creates an ephemeral key pair, requests a nonce over a TLS
 * connection authenticated with that key, signs evidence binding the key to the nonce, and sends it over a
 * connection with the same key. CAS checks that the connection's key is the attested one, so only the
 * holder of the ephemeral key receives the configuration.
 *
 * NOTE: only simulated evidence, signed with the simulation platform key, is produced here. A service in a
 * TEE would obtain a quote over the same binding instead.
 */
export async function fetchConfiguration(client: CasClient, options: FetchConfigurationOptions): Promise<ServiceConfiguration> {
  const ephemeral = await createSelfSignedCertificate({ commonName: 'cas service', usage: 'client', validDays: 1 });
  const attestedClient = client.withClientKey(ephemeral.privateKeyPem, ephemeral.certificatePem);

  const { nonce } = await attestedClient.requestNonce();
  const platform = await openPlatform({ mode: 'simulation', platformDir: options.platformDir });
  const evidence = createSimulatedEvidence(platform, 'service-key', nonce, spkiOfCertificate(ephemeral.certificatePem));

  return attestedClient.fetchConfiguration({
    session: options.session,
    service: options.service,
    nonce,
    evidence,
    hostArguments: options.hostArguments,
    hostEnvironment: options.hostEnvironment,
  });
}
