import type { ISecret } from 'kubernetes-models/v1/Secret';
import { FILE_NAMES } from '../../config/defaults.js';
import { BACKUP_REGISTRAR_KEYS, commonLabels, DCAP_SECRET_KEY, objectNames } from './names.js';

/** Builds the Secret that contains the DCAP API key; pods read it through a secretKeyRef, never from their spec. */
export function dcapApiKeySecret(name: string, namespace: string, apiKey: string): ISecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: objectNames(name).dcapSecret, namespace, labels: commonLabels(name) },
    type: 'Opaque',
    data: { [DCAP_SECRET_KEY]: Buffer.from(apiKey, 'utf8').toString('base64') },
  };
}

/**
 * Builds the Secret that carries the one-time provisioning token into the primary's pod, where `cas serve` reads
 * it with --provisioning-token-file. The plugin creates it before the pod starts and deletes it after
 * provisioning, so it is not part of the applied manifest set.
 */
export function provisioningTokenSecret(name: string, namespace: string, token: string): ISecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: objectNames(name).provisioningTokenSecret, namespace, labels: commonLabels(name, 'primary') },
    type: 'Opaque',
    data: { [FILE_NAMES.provisioningToken]: Buffer.from(token, 'utf8').toString('base64') },
  };
}

/**
 * Builds the Secret of the backup registrar: a client identity of its own (never the CAS owner's) and the
 * CAS certificate pinned at provisioning, which the registration pods use for `cas backup register`.
 */
export function backupRegistrarSecret(
  name: string,
  namespace: string,
  material: { clientKeyPem: string; clientCertificatePem: string; casCertificatePem: string },
): ISecret {
  const encode = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: objectNames(name).backupRegistrarSecret, namespace, labels: commonLabels(name, 'backup') },
    type: 'Opaque',
    data: {
      [BACKUP_REGISTRAR_KEYS.clientKey]: encode(material.clientKeyPem),
      [BACKUP_REGISTRAR_KEYS.clientCertificate]: encode(material.clientCertificatePem),
      [BACKUP_REGISTRAR_KEYS.casCertificate]: encode(material.casCertificatePem),
    },
  };
}
