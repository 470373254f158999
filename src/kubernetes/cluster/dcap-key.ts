import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { DCAP_SECRET_KEY, objectNames } from '../manifests/names.js';
import { isNotFound, kubeApiError } from './api-errors.js';

/** Returns the DCAP API key stored by an earlier run, or undefined when its Secret or key is missing. */
export async function readDcapApiKey(config: KubeConfig, namespace: string, name: string): Promise<string | undefined> {
  const core = config.makeApiClient(CoreV1Api);
  const secretName = objectNames(name).dcapSecret;
  try {
    const secret = await core.readNamespacedSecret({ name: secretName, namespace });
    const encoded = secret.data?.[DCAP_SECRET_KEY];
    return encoded === undefined || encoded === '' ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw kubeApiError(`reading Secret "${secretName}"`, error);
  }
}
