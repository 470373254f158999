import { collectServiceEvidence, type ServiceEvidence, type ServiceEvidenceOptions } from './evidence.js';
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
  /** Evidence source (default `auto`, which falls back to simulation without a TEE). */
  evidence?: Omit<ServiceEvidenceOptions, 'platformDir'>;
  /** Told which source produced the evidence, before it is sent. */
  onEvidence?: (evidence: ServiceEvidence) => void;
}

/**
 * Attests and fetches a service's configuration: creates an ephemeral key pair, requests a nonce over a TLS
 * connection authenticated with that key, signs evidence binding the key to the nonce, and sends it over a
 * connection with the same key. CAS checks that the connection's key is the attested one, so only the
 * holder of the ephemeral key receives the configuration.
 *
 * The evidence is a quote from configfs-tsm (TDX, SEV-SNP) or Gramine (SGX) when one of them is present or
 * forced, and simulated evidence signed with the platform key otherwise; see collectServiceEvidence.
 */
export async function fetchConfiguration(client: CasClient, options: FetchConfigurationOptions): Promise<ServiceConfiguration> {
  const ephemeral = await createSelfSignedCertificate({ commonName: 'cas service', usage: 'client', validDays: 1 });
  const attestedClient = client.withClientKey(ephemeral.privateKeyPem, ephemeral.certificatePem);

  const { nonce } = await attestedClient.requestNonce();
  const collected = await collectServiceEvidence({ source: 'auto', ...options.evidence, platformDir: options.platformDir }, nonce, spkiOfCertificate(ephemeral.certificatePem));
  options.onEvidence?.(collected);
  const evidence = collected.evidence;

  return attestedClient.fetchConfiguration({
    session: options.session,
    service: options.service,
    nonce,
    evidence,
    hostArguments: options.hostArguments,
    hostEnvironment: options.hostEnvironment,
  });
}
