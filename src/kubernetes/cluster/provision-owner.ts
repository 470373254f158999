import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { attestCas } from '../../client/attest.js';
import { connectPinned } from '../../client/connect.js';
import { casHome, loadOrCreateIdentity, PINNED_DIR, pinFileName, readPinnedCertificate, writePinnedCertificate } from '../../client/home.js';
import { CasError, isCasError } from '../../errors/cas-error.js';
import type { CasMode } from '../manifests/options.js';

export interface ProvisionOwnerRequest {
  /** URL the plugin reaches the CAS at: the port-forward's loopback URL or --cas-url. */
  connectUrl: string;
  /** Whether `connectUrl` is a one-off port-forward, whose pin is removed afterwards. */
  connectUrlIsTemporary: boolean;
  /** URLs under which the CAS certificate is pinned in CAS_HOME for later commands. */
  pinUrls: string[];
  token: string;
  mode: CasMode;
  home?: string;
}

export interface ProvisionOwnerResult {
  /** Key hash (SHA-256 of the public key) of the invoking user's identity in CAS_HOME. */
  clientKeyHash: string;
  /** True when this run made that identity the CAS owner; false when the CAS already had an owner, left unchanged. */
  provisioned: boolean;
  certificateSha256: string;
  /** The pinned CAS certificate (PEM). */
  certificatePem: string;
  pinnedUrls: string[];
}

/**
 * Attests the CAS and pins its certificate, then sends the provisioning token over the pinned connection,
 * so the token only ever reaches the CAS whose evidence was verified. The owner is the client identity in
 * CAS_HOME. A CAS in simulation mode is accepted only because the deployment asked for simulation mode.
 */
export async function provisionOwner(request: ProvisionOwnerRequest): Promise<ProvisionOwnerResult> {
  const home = request.home ?? casHome();
  const identity = await loadOrCreateIdentity(home);
  const attested = await attestCas({ cas: request.connectUrl, acceptSimulation: request.mode === 'simulation', home });
  if (attested.mode !== request.mode) {
    throw new CasError('ATTESTATION_REJECTED', `the CAS reports ${attested.mode} mode, but the deployment asked for ${request.mode} mode`);
  }

  let provisioned = true;
  try {
    const { client } = await connectPinned(request.connectUrl, home);
    await client.provision(request.token);
  } catch (error) {
    if (!isCasError(error, 'ALREADY_PROVISIONED')) throw error;
    provisioned = false;
  }

  const connectUrl = new URL(request.connectUrl);
  const certificatePem = readPinnedCertificate(connectUrl, home);
  if (certificatePem === undefined) throw new CasError('INTERNAL', `the certificate pinned for ${connectUrl.origin} disappeared from ${home}`);
  const pinnedUrls: string[] = [];
  for (const url of request.pinUrls) {
    const parsed = new URL(url);
    writePinnedCertificate(parsed, certificatePem, home);
    pinnedUrls.push(parsed.origin);
  }
  if (request.connectUrlIsTemporary && !pinnedUrls.includes(connectUrl.origin)) {
    rmSync(join(home, PINNED_DIR, pinFileName(connectUrl)), { force: true });
  }

  return { clientKeyHash: identity.keyHash, provisioned, certificateSha256: attested.certificateSha256, certificatePem, pinnedUrls };
}
