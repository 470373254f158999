import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, type KubeConfig, type V1StatefulSet } from '@kubernetes/client-node';
import { sendRequest } from '../../../client/transport.js';
import { CasError, isCasError } from '../../../errors/cas-error.js';
import { keyHashOfCertificate } from '../../../tls/certificates.js';
import { isNotFound, kubeApiError } from '../../cluster/api-errors.js';
import { objectNames } from '../../manifests/names.js';
import { attestDeployedCas, connectDeployedCas, readStatus, type DeployedCas } from './deployed-cas.js';

/** Target of a day-2 verb: the deployment's name and namespace, the cluster, and how to reach the CAS. */
export interface Day2Target {
  name: string;
  namespace: string;
  config: KubeConfig;
  casUrl: string | undefined;
  say: (line: string) => void;
}

/** Settings of the deployed CAS, read from its StatefulSet (the `cas serve` arguments). */
export interface DeployedSettings {
  statefulSet: V1StatefulSet;
  mode: 'simulation' | 'hardware';
  snapshotIntervalSeconds: number;
  readyReplicas: number;
}

/** Reads the StatefulSet NAME; returns undefined when it does not exist. */
export async function readDeployment(target: Day2Target): Promise<DeployedSettings | undefined> {
  const apps = target.config.makeApiClient(AppsV1Api);
  let statefulSet: V1StatefulSet;
  try {
    statefulSet = await apps.readNamespacedStatefulSet({ name: objectNames(target.name).statefulSet, namespace: target.namespace });
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw kubeApiError(`reading statefulset "${target.name}"`, error);
  }
  const container = statefulSet.spec?.template.spec?.containers[0];
  const args = [...(container?.command ?? []), ...(container?.args ?? [])];
  const argument = (flag: string): string | undefined => {
    const index = args.indexOf(flag);
    return index < 0 ? undefined : args[index + 1];
  };
  const mode = argument('--mode') === 'hardware' ? 'hardware' : 'simulation';
  const interval = Number(argument('--snapshot-interval') ?? '60');
  return { statefulSet, mode, snapshotIntervalSeconds: Number.isInteger(interval) && interval > 0 ? interval : 60, readyReplicas: statefulSet.status?.readyReplicas ?? 0 };
}

/** Attempts of a day-2 read whose connection failed; every day-2 request is a read, so a retry is safe. */
const CONNECTION_ATTEMPTS = 3;

/**
 * Runs `use` with a connection to the deployed CAS and closes the connection afterwards. When a connection
 * fails (CONNECTION_FAILED, such as a port-forward stream reset), `use` runs again on a new connection, up
 * to three times. So `use` must only read.
 */
export async function withDeployedCas<T>(target: Day2Target, use: (cas: DeployedCas) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    const cas = await connectDeployedCas({ config: target.config, namespace: target.namespace, name: target.name, casUrl: target.casUrl, onError: target.say });
    try {
      return await use(cas);
    } catch (error) {
      if (!isCasError(error, 'CONNECTION_FAILED') || attempt >= CONNECTION_ATTEMPTS) throw error;
      target.say(`${error.message}; retrying (attempt ${attempt + 1} of ${CONNECTION_ATTEMPTS})`);
      await sleep(300 * attempt);
    } finally {
      await cas.close();
    }
  }
}

/**
 * `--is-provisioned`: returns 0 when the deployed CAS has an owner, 1 when it has none or is not deployed.
 * It reads only the public part of `GET /v1/status`, so it sends nothing secret to an unverified server.
 */
export async function isProvisioned(target: Day2Target): Promise<{ exitCode: 0 | 1; document: Record<string, unknown> }> {
  const deployment = await readDeployment(target);
  if (deployment === undefined) {
    target.say(`statefulset "${target.name}" not found in namespace "${target.namespace}": the CAS is not deployed`);
    return { exitCode: 1, document: { name: target.name, namespace: target.namespace, deployed: false, provisioned: false } };
  }
  const status = await withDeployedCas(target, async (cas) => readStatus(cas.unverified));
  const provisioned = status.provisioned === true;
  target.say(provisioned ? `CAS "${target.name}" is provisioned` : `CAS "${target.name}" is not provisioned (role ${status.role})`);
  return { exitCode: provisioned ? 0 : 1, document: { name: target.name, namespace: target.namespace, deployed: true, provisioned, role: status.role } };
}

export interface PublicKey {
  /** SubjectPublicKeyInfo, PEM. */
  publicKeyPem: string;
  /** Lower-case hex SHA-256 of the SubjectPublicKeyInfo DER, as in access policies and audit entries. */
  keyHash: string;
  certificatePem: string;
}

/**
 * `--print-public-keys`: attests the CAS (its evidence must bind the certificate it presents), then reads
 * the audit certificate over a connection bound to the attested certificate and checks that the CAS
 * identity key issued it.
 */
export async function readPublicKeys(target: Day2Target): Promise<{ cas: PublicKey; audit: PublicKey; certificatePinned: boolean }> {
  const deployment = await requireDeployment(target);
  return withDeployedCas(target, async (cas) => {
    const attested = await attestDeployedCas(cas, deployment.mode);
    if (attested.matchesPin === false) {
      throw new CasError('SERVER_CERT_MISMATCH', `the CAS presents certificate sha256 ${attested.certificateSha256}, not the one pinned for ${cas.serviceUrl} in CAS_HOME; the CAS identity changed, investigate before trusting it`);
    }
    const response = await sendRequest(cas.transport(attested.certificatePem), 'GET', '/v1/certificates');
    const body = response.body as { casCertificate?: unknown; auditChain?: unknown };
    const auditPem = Array.isArray(body.auditChain) ? body.auditChain[0] : undefined;
    if (typeof auditPem !== 'string') throw new CasError('CONNECTION_FAILED', 'the CAS returned no audit certificate from GET /v1/certificates');

    const casCertificate = new X509Certificate(attested.certificatePem);
    const auditCertificate = new X509Certificate(auditPem);
    if (!auditCertificate.verify(casCertificate.publicKey)) {
      throw new CasError('CERT_CHAIN_INVALID', 'the audit certificate is not signed by the CAS identity key');
    }
    return { cas: publicKeyOf(casCertificate), audit: publicKeyOf(auditCertificate), certificatePinned: attested.matchesPin === true };
  });
}

function publicKeyOf(certificate: X509Certificate): PublicKey {
  return {
    publicKeyPem: certificate.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyHash: keyHashOfCertificate(certificate.raw),
    certificatePem: certificate.toString(),
  };
}

/** Reads the deployment or throws NOT_FOUND naming the StatefulSet. */
export async function requireDeployment(target: Day2Target): Promise<DeployedSettings> {
  const deployment = await readDeployment(target);
  if (deployment === undefined) {
    throw new CasError('NOT_FOUND', `statefulset "${target.name}" not found in namespace "${target.namespace}"; deploy the CAS first with: kubectl provision cas ${target.name} -n ${target.namespace}`);
  }
  return deployment;
}
