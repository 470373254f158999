import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { BackupClient } from '../../backup/backup-client.js';
import { casHome, loadOrCreateIdentity } from '../../client/home.js';
import { CasError, isCasError } from '../../errors/cas-error.js';
import { createSelfSignedCertificate, keyHashOfCertificate } from '../../tls/certificates.js';
import { BACKUP_REGISTRAR_KEYS, objectNames } from '../manifests/names.js';
import { backupRegistrarSecret } from '../manifests/secrets.js';
import type { KubeObject } from '../manifests/index.js';
import { isNotFound, kubeApiError } from './api-errors.js';
import { applyObjects } from './apply.js';

/**
 * Writes the backup registrar Secret: the registrar's own client identity, kept across runs so that the
 * key an operator authorized stays valid, and the CAS certificate pinned by this run. Returns the
 * registrar's key hash.
 */
export async function ensureBackupRegistrar(
  config: KubeConfig,
  namespace: string,
  name: string,
  casCertificatePem: string,
  onApplied: (object: KubeObject) => void,
): Promise<{ keyHash: string; created: boolean }> {
  const core = config.makeApiClient(CoreV1Api);
  const secretName = objectNames(name).backupRegistrarSecret;
  let identity: { privateKeyPem: string; certificatePem: string } | undefined;
  try {
    const existing = await core.readNamespacedSecret({ name: secretName, namespace });
    const key = existing.data?.[BACKUP_REGISTRAR_KEYS.clientKey];
    const certificate = existing.data?.[BACKUP_REGISTRAR_KEYS.clientCertificate];
    if (key !== undefined && certificate !== undefined) {
      identity = { privateKeyPem: Buffer.from(key, 'base64').toString('utf8'), certificatePem: Buffer.from(certificate, 'base64').toString('utf8') };
    }
  } catch (error) {
    if (!isNotFound(error)) throw kubeApiError(`reading Secret "${secretName}"`, error);
  }

  const created = identity === undefined;
  identity ??= await createSelfSignedCertificate({ commonName: `cas backup registrar ${namespace}/${name}`, usage: 'client', validDays: 3650 });
  const secret = backupRegistrarSecret(name, namespace, {
    clientKeyPem: identity.privateKeyPem,
    clientCertificatePem: identity.certificatePem,
    casCertificatePem,
  }) as KubeObject;
  await applyObjects(config, [secret], onApplied);
  return { keyHash: keyHashOfCertificate(identity.certificatePem), created };
}

export interface AuthorizeRegistrarRequest {
  /** URL the plugin reaches the CAS at (the port-forward's loopback URL or --cas-url). */
  connectUrl: string;
  /** The CAS certificate that this run attested and pinned; the connection must present exactly it. */
  casCertificatePem: string;
  registrarKeyHash: string;
  /** CAS_HOME holding the owner's client identity; default CAS_HOME. */
  home?: string;
}

/**
 * Authorizes the registrar key, as the CAS owner (the client identity in CAS_HOME), to register platforms,
 * so that the registration pods succeed. Idempotent: `added` is false when the key was already authorized.
 * Only the key hash crosses the wire; the registrar's private key never leaves its Secret.
 *
 * Throws PERMISSION_DENIED, with the command the owner runs instead, when the identity in CAS_HOME is not
 * the CAS owner.
 */
export async function authorizeBackupRegistrar(request: AuthorizeRegistrarRequest): Promise<{ added: boolean; ownerKeyHash: string }> {
  const owner = await loadOrCreateIdentity(request.home ?? casHome());
  const client = BackupClient.withIdentity({
    casUrl: new URL(request.connectUrl),
    clientKeyPem: owner.privateKeyPem,
    clientCertificatePem: owner.certificatePem,
    casCertificatePem: request.casCertificatePem,
  });
  try {
    const { added } = await client.authorizeRegistrar(request.registrarKeyHash);
    return { added, ownerKeyHash: owner.keyHash };
  } catch (error) {
    if (!isCasError(error, 'PERMISSION_DENIED')) throw error;
    throw new CasError(
      'PERMISSION_DENIED',
      `the client identity in CAS_HOME (key sha256 ${owner.keyHash}) is not the CAS owner, so it cannot authorize the backup registrar; ` +
        `the owner runs: cas backup authorize-registrar ${request.registrarKeyHash} --cas URL`,
      { cause: error },
    );
  }
}
