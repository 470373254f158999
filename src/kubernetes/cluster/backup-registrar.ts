import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
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
