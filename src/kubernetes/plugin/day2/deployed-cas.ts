import { randomBytes, X509Certificate } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { CasClient } from '../../../client/cas-client.js';
import { casHome, loadOrCreateIdentity, readPinnedCertificate } from '../../../client/home.js';
import type { ServerTrust, TransportOptions } from '../../../client/transport.js';
import { DEFAULTS } from '../../../config/defaults.js';
import { CasError } from '../../../errors/cas-error.js';
import { verifySimulatedEvidence } from '../../../server/evidence/simulation.js';
import type { CasStatus } from '../../../status/status-types.js';
import { certificateFingerprint } from '../../../tls/certificates.js';
import { forwardPodPort } from '../../cluster/port-forward.js';
import { inClusterUrl, objectNames } from '../../manifests/names.js';

/** A connection to the CAS of a deployment: through `--cas-url`, or a port-forward to pod NAME-0. */
export interface DeployedCas {
  /** The URL the plugin connects to (a loopback port-forward or --cas-url). */
  connectUrl: string;
  /** The in-cluster URL under which `kubectl provision cas` pinned the certificate. */
  serviceUrl: string;
  /** The certificate pinned for the service URL in CAS_HOME, if any. */
  pinnedCertificatePem: string | undefined;
  /** A client that accepts any server certificate: for public reads and for attestation only. */
  unverified: CasClient;
  /** A client bound to `certificatePem`, which the caller verified (pinned or attested). */
  trusting(certificatePem: string): CasClient;
  /** Transport options bound to `certificatePem`, for routes that CasClient has no method for. */
  transport(certificatePem: string): TransportOptions;
  close(): Promise<void>;
}

export interface AttestedCas {
  mode: 'simulation' | 'hardware';
  certificatePem: string;
  certificateSha256: string;
  /** True when CAS_HOME has a pin for the service URL and the attested certificate equals it. */
  matchesPin: boolean | undefined;
}

/**
 * Opens a connection to the deployed CAS with the client identity in CAS_HOME. The caller closes it. With
 * `casUrl` the plugin connects directly; otherwise it forwards a loopback port to the primary pod's API
 * port through the API server, as provisioning does.
 */
export async function connectDeployedCas(options: {
  config: KubeConfig;
  namespace: string;
  name: string;
  casUrl: string | undefined;
  onError: (message: string) => void;
}): Promise<DeployedCas> {
  const home = casHome();
  const identity = await loadOrCreateIdentity(home);
  const serviceUrl = inClusterUrl(options.name, options.namespace);
  const pinnedCertificatePem = readPinnedCertificate(new URL(serviceUrl), home);

  let connectUrl: string;
  let close: () => Promise<void> = async () => undefined;
  if (options.casUrl !== undefined) {
    connectUrl = options.casUrl;
  } else {
    const forward = await forwardPodPort(options.config, options.namespace, objectNames(options.name).primaryPod, DEFAULTS.listenPort, options.onError);
    connectUrl = `https://127.0.0.1:${forward.localPort}`;
    close = () => forward.close();
  }

  const transport = (trust: ServerTrust): TransportOptions => ({
    casUrl: new URL(connectUrl),
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    trust,
    timeoutMs: 15_000,
  });
  return {
    connectUrl,
    serviceUrl,
    pinnedCertificatePem,
    unverified: new CasClient(transport({ kind: 'unverified' })),
    trusting: (certificatePem) => new CasClient(transport({ kind: 'pinned', certificatePem })),
    transport: (certificatePem) => transport({ kind: 'pinned', certificatePem }),
    close,
  };
}

/**
 * Verifies the CAS's evidence for a fresh nonce: the evidence must bind the certificate that the CAS
 * presented on the same TLS connection. Simulated evidence is accepted only when the deployment runs in
 * simulation mode, and then proves nothing about the code. Nothing is written to CAS_HOME.
 */
export async function attestDeployedCas(cas: DeployedCas, expectedMode: 'simulation' | 'hardware'): Promise<AttestedCas> {
  const nonce = randomBytes(32).toString('hex');
  const response = await cas.unverified.casEvidence(nonce);
  if (response.mode !== expectedMode) {
    throw new CasError('ATTESTATION_REJECTED', `the CAS reports ${response.mode} mode, but the deployment runs in ${expectedMode} mode`);
  }
  const evidenceType = (response.evidence as { type?: unknown } | undefined)?.type;
  if (evidenceType !== 'simulation') {
    // NOTE: platforms seal keys only in simulation mode in this build, so no hardware CAS evidence exists yet.
    throw new CasError('EVIDENCE_INVALID', `the CAS sent evidence of type "${String(evidenceType)}", which this plugin cannot verify`);
  }
  verifySimulatedEvidence(response.evidence, { purpose: 'cas-certificate', nonce, boundData: response.presentedCertificateDer });

  const certificatePem = new X509Certificate(response.presentedCertificateDer).toString();
  const certificateSha256 = certificateFingerprint(response.presentedCertificateDer);
  const matchesPin = cas.pinnedCertificatePem === undefined ? undefined : certificateFingerprint(cas.pinnedCertificatePem) === certificateSha256;
  return { mode: response.mode, certificatePem, certificateSha256, matchesPin };
}

/** Reads `GET /v1/status` over a connection bound to a verified certificate (owner details need the owner's key). */
export async function readStatus(client: CasClient): Promise<CasStatus> {
  return (await client.status()) as unknown as CasStatus;
}
