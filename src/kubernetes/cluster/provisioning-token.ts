import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { FILE_NAMES } from '../../config/defaults.js';
import { objectNames } from '../manifests/names.js';
import { provisioningTokenSecret } from '../manifests/secrets.js';
import type { KubeObject } from '../manifests/index.js';
import { isNotFound, kubeApiError } from './api-errors.js';

/** 32 random bytes, base64url: the token's entropy does not depend on the CAS's own checks. */
export function generateProvisioningToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Returns the provisioning token that the primary's pod reads, creating its Secret when missing. An
 * existing Secret is reused, because the kubelet refreshes mounted Secrets only about once a minute and a
 * fresh token would not reach a running pod in time. The token never leaves this process except in the
 * Secret and in the provisioning request.
 */
export async function ensureProvisioningToken(config: KubeConfig, namespace: string, name: string): Promise<{ token: string; created: boolean }> {
  const core = config.makeApiClient(CoreV1Api);
  const secretName = objectNames(name).provisioningTokenSecret;
  try {
    const existing = await core.readNamespacedSecret({ name: secretName, namespace });
    const encoded = existing.data?.[FILE_NAMES.provisioningToken];
    if (encoded !== undefined && encoded.length > 0) return { token: Buffer.from(encoded, 'base64').toString('utf8'), created: false };
  } catch (error) {
    if (!isNotFound(error)) throw kubeApiError(`reading Secret "${secretName}"`, error);
  }

  const token = generateProvisioningToken();
  const secret = provisioningTokenSecret(name, namespace, token) as KubeObject;
  try {
    await core.createNamespacedSecret({ namespace, body: secret as never });
  } catch (error) {
    throw kubeApiError(`creating Secret "${secretName}"`, error);
  }
  return { token, created: true };
}

/** Deletes the token Secret once the CAS has an owner; a missing Secret is not an error. */
export async function deleteProvisioningToken(config: KubeConfig, namespace: string, name: string): Promise<void> {
  const core = config.makeApiClient(CoreV1Api);
  const secretName = objectNames(name).provisioningTokenSecret;
  try {
    await core.deleteNamespacedSecret({ name: secretName, namespace });
  } catch (error) {
    if (!isNotFound(error)) throw kubeApiError(`deleting Secret "${secretName}"`, error);
  }
}
