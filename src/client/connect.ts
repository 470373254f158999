import { DEFAULTS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { CasClient } from './cas-client.js';
import { casHome, loadOrCreateIdentity, readPinnedCertificate, type ClientIdentity } from './home.js';

/** Resolves the CAS URL from `--cas`, else `CAS_URL`, else the embedded default `https://127.0.0.1:8081`. */
export function resolveCasUrl(flag: string | undefined): URL {
  const text = flag ?? process.env['CAS_URL'] ?? `https://${DEFAULTS.listenHost}:${DEFAULTS.listenPort}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CasError('INVALID_ARGUMENT', `invalid CAS URL "${text}"; expected https://HOST:PORT`);
  }
  if (url.protocol !== 'https:') {
    throw new CasError('INVALID_ARGUMENT', `invalid CAS URL "${text}": CAS serves only HTTPS, use https://HOST:PORT`);
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new CasError('INVALID_ARGUMENT', `invalid CAS URL "${text}": give only https://HOST:PORT, without a path`);
  }
  return url;
}

/**
 * Creates a client for a CAS whose certificate `cas attest` has pinned in CAS_HOME. Throws SERVER_NOT_PINNED naming
 * the URL and the command to run when there is no pin.
 */
export async function connectPinned(casFlag: string | undefined, home: string = casHome()): Promise<{ client: CasClient; identity: ClientIdentity }> {
  const casUrl = resolveCasUrl(casFlag);
  const identity = await loadOrCreateIdentity(home);
  const pinned = readPinnedCertificate(casUrl, home);
  if (pinned === undefined) {
    throw new CasError(
      'SERVER_NOT_PINNED',
      `no pinned certificate for the CAS at ${casUrl.origin} in ${home}; run: cas attest --cas ${casUrl.origin} (add --accept-simulation for a simulated CAS)`,
      { details: { url: casUrl.origin } },
    );
  }
  const client = new CasClient({
    casUrl,
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    trust: { kind: 'pinned', certificatePem: pinned },
  });
  return { client, identity };
}

/** Creates a client that accepts any server certificate, for `cas attest` (which verifies it) and `cas provision`. */
export async function connectUnverified(casFlag: string | undefined, home: string = casHome()): Promise<{ client: CasClient; identity: ClientIdentity }> {
  const casUrl = resolveCasUrl(casFlag);
  const identity = await loadOrCreateIdentity(home);
  const client = new CasClient({
    casUrl,
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    trust: { kind: 'unverified' },
  });
  return { client, identity };
}
