import { CasClient } from '../../client/cas-client.js';
import { casHome, loadOrCreateIdentity } from '../../client/home.js';
import type { OwnerSettings, OwnerSettingsDocument } from '../../server/owner-settings.js';

export interface ApplyOwnerSettingsRequest {
  /** URL that reaches the CAS now: the port-forward's loopback URL or --cas-url. */
  connectUrl: string;
  /** The CAS certificate that provisioning attested and pinned; the connection must present it. */
  casCertificatePem: string;
  settings: OwnerSettingsDocument;
  /** CAS_HOME holding the owner's client identity; default CAS_HOME. */
  home?: string;
}

/**
 * Replaces the CAS settings with `settings` as the CAS owner (the client identity in CAS_HOME), over a
 * connection pinned to the attested certificate. Idempotent: applying the same document again returns no
 * changed keys. Throws PERMISSION_DENIED when that identity is not the owner.
 */
export async function applyOwnerSettings(request: ApplyOwnerSettingsRequest): Promise<{ settings: OwnerSettings; changed: string[] }> {
  const identity = await loadOrCreateIdentity(request.home ?? casHome());
  const client = new CasClient({
    casUrl: new URL(request.connectUrl),
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    trust: { kind: 'pinned', certificatePem: request.casCertificatePem },
  });
  return client.replaceOwnerSettings(request.settings);
}
