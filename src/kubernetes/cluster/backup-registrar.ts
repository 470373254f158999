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
 * key an operator authorized stays valid, and the CAS certificate pinned by this run. With `replace`, a
 * new identity replaces the stored one. Returns the registrar's key hash.
 */
export async function ensureBackupRegistrar(
  config: KubeConfig,
  namespace: string,
  name: string,
  casCertificatePem: string,
  onApplied: (object: KubeObject) => void,
  replace = false,
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

  if (replace) identity = undefined;
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

export interface ReconcileRegistrarRequest {
  config: KubeConfig;
  namespace: string;
  /** The CAS deployment's name. */
  name: string;
  /** URL the plugin reaches the CAS at (the port-forward's loopback URL or --cas-url). */
  connectUrl: string;
  /** The CAS certificate that this run attested and pinned; the connection must present exactly it. */
  casCertificatePem: string;
  /** CAS_HOME holding the owner's client identity; default CAS_HOME. */
  home?: string;
  onApplied: (object: KubeObject) => void;
}

export interface ReconcileRegistrarResult {
  keyHash: string;
  /**
   * `authorized`: this run created the key and authorized it. `unchanged`: the stored key was already
   * authorized. `replaced`: the stored key was not authorized, so a new key replaced it.
   */
  outcome: 'authorized' | 'unchanged' | 'replaced';
  /** The stored key that was replaced, for `replaced`. */
  replacedKeyHash?: string;
}

/**
 * Makes the registrar Secret hold a key that the CAS accepts for registering platforms, acting as the CAS
 * owner (the client identity in CAS_HOME). A stored key that is authorized is kept, so re-runs change
 * nothing. A stored key that is not authorized is never authorized by the plugin: the owner may have
 * revoked it because it leaked, or someone who can write Secrets in the namespace may have put their own
 * key there. A new key replaces it instead. Only key hashes cross the wire.
 *
 * Throws PERMISSION_DENIED, with the command the owner runs instead, when the identity in CAS_HOME is not
 * the CAS owner. The Secret is then written with its stored key, whose hash is `details.registrarKeyHash`.
 */
export async function reconcileBackupRegistrar(request: ReconcileRegistrarRequest): Promise<ReconcileRegistrarResult> {
  const owner = await loadOrCreateIdentity(request.home ?? casHome());
  const client = BackupClient.withIdentity({
    casUrl: new URL(request.connectUrl),
    clientKeyPem: owner.privateKeyPem,
    clientCertificatePem: owner.certificatePem,
    casCertificatePem: request.casCertificatePem,
  });
  const write = (replace: boolean): Promise<{ keyHash: string; created: boolean }> =>
    ensureBackupRegistrar(request.config, request.namespace, request.name, request.casCertificatePem, request.onApplied, replace);

  let authorized: string[];
  try {
    authorized = (await client.list()).registrars.map((registrar) => registrar.keyHash);
  } catch (error) {
    if (!isCasError(error, 'PERMISSION_DENIED')) throw error;
    const stored = await write(false);
    throw new CasError(
      'PERMISSION_DENIED',
      `the client identity in CAS_HOME (key sha256 ${owner.keyHash}) is not the CAS owner, so it cannot authorize the backup registrar; ` +
        `the owner runs: cas backup authorize-registrar ${stored.keyHash} --cas URL`,
      { cause: error, details: { registrarKeyHash: stored.keyHash } },
    );
  }

  const stored = await write(false);
  if (authorized.includes(stored.keyHash)) return { keyHash: stored.keyHash, outcome: 'unchanged' };
  const current = stored.created ? stored : await write(true);
  await client.authorizeRegistrar(current.keyHash);
  return stored.created
    ? { keyHash: current.keyHash, outcome: 'authorized' }
    : { keyHash: current.keyHash, outcome: 'replaced', replacedKeyHash: stored.keyHash };
}
