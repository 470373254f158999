import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CoreV1Api, KubernetesObjectApi, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { resourceLabel } from '../../cluster/apply.js';
import { isNotFound, kubeApiError } from '../../cluster/api-errors.js';
import type { KubeObject } from '../../manifests/index.js';
import { objectNames } from '../../manifests/names.js';
import type { Day2Target } from './inspect-verbs.js';
import { createTarGz, type TarEntry } from './tar.js';

/** Lines of each container log in the report. */
const LOG_TAIL_LINES = 1000;

export interface ReportOptions {
  file: string;
  includeSecrets: boolean;
  /** Builds the manifests that `kubectl provision cas` applies with the same flags, for this DCAP key. */
  renderManifests: (namespace: string, dcapApiKey: string) => KubeObject[];
  /** The DCAP key from --dcap-api (or the default key); redacted like every Secret value unless `includeSecrets`. */
  dcapApiKey: string;
}

/**
 * `--report FILE`: writes a gzip-compressed tar archive for a support case: the manifests this plugin
 * renders with the given flags, the live state of each of those objects and of the pods and claims, the
 * namespace's events about the deployment, and the last log lines of every container of its pods.
 * Secret values (`data`, `stringData`) are replaced by their length unless `includeSecrets` is set.
 * A part that cannot be read is recorded in the archive as an error file, so one failure does not hide
 * the rest.
 */
export async function writeReport(target: Day2Target, options: ReportOptions): Promise<{ file: string; entries: number; names: string[] }> {
  const entries: TarEntry[] = [];
  const add = (name: string, text: string): void => void entries.push({ name, content: Buffer.from(text, 'utf8') });
  const redact = (object: KubernetesObject): KubernetesObject => (options.includeSecrets ? stripNoise(object) : redactSecret(stripNoise(object)));

  const rendered = options.renderManifests(target.namespace, options.dcapApiKey);
  add('manifests.yaml', rendered.map((object) => stringify(redact(object as KubernetesObject), { lineWidth: 0 })).join('---\n'));

  const objects = KubernetesObjectApi.makeApiClient(target.config);
  const names = objectNames(target.name);
  const wanted: KubeObject[] = [
    ...rendered,
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: names.provisioningTokenSecret, namespace: target.namespace } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: names.backupRegistrarSecret, namespace: target.namespace } },
    ...Object.values(names.claims).map((claim) => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: claim, namespace: target.namespace } })),
  ];
  for (const object of wanted) {
    const file = `objects/${resourceLabel(object).replace('/', '_')}.yaml`;
    try {
      const live = await objects.read({ apiVersion: object.apiVersion, kind: object.kind, metadata: { name: object.metadata?.name ?? '', namespace: target.namespace } });
      add(file, stringify(redact(live), { lineWidth: 0 }));
    } catch (error) {
      add(`${file}.error`, isNotFound(error) ? 'not found\n' : `${kubeApiError(`reading ${resourceLabel(object)}`, error).message}\n`);
    }
  }

  const core = target.config.makeApiClient(CoreV1Api);
  const pods = await listDeploymentPods(core, target);
  for (const pod of pods.items) {
    const podName = pod.metadata?.name ?? '';
    add(`pods/${podName}.yaml`, stringify(stripNoise(pod as KubernetesObject), { lineWidth: 0 }));
    const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((container) => container.name);
    for (const container of containers) {
      try {
        const log = await core.readNamespacedPodLog({ name: podName, namespace: target.namespace, container, tailLines: LOG_TAIL_LINES });
        add(`logs/${podName}_${container}.log`, log);
      } catch (error) {
        add(`logs/${podName}_${container}.log.error`, `${kubeApiError(`reading the log of ${podName}/${container}`, error).message}\n`);
      }
    }
  }
  if (pods.error !== undefined) add('pods.error', pods.error + '\n');

  try {
    const events = await core.listNamespacedEvent({ namespace: target.namespace });
    const related = events.items.filter((event) => isDeploymentObject(event.involvedObject.name ?? '', target.name));
    add('events.yaml', stringify(related.map((event) => stripNoise(event as KubernetesObject)), { lineWidth: 0 }));
  } catch (error) {
    add('events.yaml.error', `${kubeApiError('listing events', error).message}\n`);
  }

  const createdAt = new Date();
  entries.unshift({
    name: 'README.txt',
    content: Buffer.from(
      [
        `kubectl provision cas ${target.name} --report, namespace ${target.namespace}, created ${createdAt.toISOString()}`,
        options.includeSecrets ? 'Secret values are INCLUDED (--include-secrets): share this file only with people who may read them.' : 'Secret values are redacted: each value is replaced by its length.',
        'manifests.yaml: what the plugin renders with these flags; objects/: the live objects; pods/ and logs/: pods of the deployment and the last log lines of each container; events.yaml: events about the deployment; *.error: parts that could not be read.',
        '',
      ].join('\n'),
      'utf8',
    ),
  });

  const file = resolve(options.file);
  writeFileSync(file, createTarGz(entries, createdAt), { mode: 0o600 });
  return { file, entries: entries.length, names: entries.map((entry) => entry.name) };
}

async function listDeploymentPods(core: CoreV1Api, target: Day2Target): Promise<{ items: V1Pod[]; error?: string }> {
  try {
    const list = await core.listNamespacedPod({ namespace: target.namespace });
    return { items: list.items.filter((pod) => isDeploymentObject(pod.metadata?.name ?? '', target.name)) };
  } catch (error) {
    return { items: [], error: kubeApiError('listing pods', error).message };
  }
}

/** Objects of deployment NAME are NAME itself and objects named NAME-something (pods, claims, Secrets). */
function isDeploymentObject(objectName: string, name: string): boolean {
  return objectName === name || objectName.startsWith(`${name}-`) || objectName.endsWith(`-${name}-0`);
}

/** Removes managedFields, which repeat every field and make the files hard to read. */
function stripNoise(object: KubernetesObject): KubernetesObject {
  const copy = structuredClone(object) as KubernetesObject & { metadata?: { managedFields?: unknown } };
  if (copy.metadata !== undefined) delete copy.metadata.managedFields;
  return copy;
}

/** Replaces each value of a Secret with `REDACTED (N bytes)` and drops the last-applied annotation, which repeats them. */
function redactSecret(object: KubernetesObject): KubernetesObject {
  if (object.kind !== 'Secret') return object;
  const secret = object as KubernetesObject & { data?: Record<string, string>; stringData?: Record<string, string> };
  for (const field of ['data', 'stringData'] as const) {
    const values = secret[field];
    if (values === undefined) continue;
    secret[field] = Object.fromEntries(
      Object.entries(values).map(([key, value]) => [key, `REDACTED (${field === 'data' ? Buffer.from(value, 'base64').length : Buffer.byteLength(value)} bytes)`]),
    );
  }
  delete secret.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'];
  return secret;
}
