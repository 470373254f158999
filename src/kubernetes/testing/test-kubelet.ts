import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { pinFileName } from '../../client/home.js';
import { startCasProcess, type CasProcess } from '../../server/testing/cas-process.js';
import { casCliPath } from '../../testing/paths.js';
import { CONTAINER_NAMES, IMAGE_CAS_CLI, PORT_NAMES } from '../manifests/names.js';
import type { TestApiServer } from './test-api-server.js';

type Json = Record<string, any>;

/**
 * Plays the kubelet for the primary's pod of a StatefulSet stored in a TestApiServer. It runs the CAS
 * container's command as a real `cas serve` process and maps each volume mount to a directory under
 * `root`, where claims and the node's hostPath persist across restarts. Secret volumes and secretKeyRef
 * variables are filled from the stored Secrets, the readiness probe is polled over HTTPS, and the pod's
 * API port is made reachable through the test API server's port-forward.
 *
 * It also runs the pods that the test API server's DaemonSet controller places on nodes. Their init
 * containers run in order as real processes, and each node has its own hostPath directories. A failing
 * init container is retried with back-off until it succeeds, and then the pod is marked ready. The main
 * containers of those pods (`sleep infinity`) are not run.
 *
 * The primary's process gets its pod name and namespace from `fieldRef` variables, as the downward API
 * gives them, and a kubeconfig for the test API server when its pod mounts a service account token, so
 * `cas serve --lease kubernetes` renews its Lease there.
 *
 * Cluster DNS: a service URL (`https://SERVICE.NAMESPACE.svc:PORT`) in a command word, and the pin file
 * name derived from it, is rewritten to the loopback address of the running CAS process behind the
 * service. While no CAS process is behind it, the attempt fails as a connection to a service without
 * endpoints does.
 *
 * NOTE: the platform-directory `chown` init container is not run: it needs root. The kubelet creates each
 * hostPath directory owned by the test's user with mode 0700, which is what that container produces.
 */
export class TestKubelet {
  private readonly running = new Map<string, { generation: number; cas: CasProcess }>();
  private pending: Promise<void> = Promise.resolve();
  private readonly daemonPods = new Map<string, Promise<void>>();
  private readonly children = new Set<ChildProcess>();
  private stopping = false;
  /** Output of every CAS process started, for checks that scan logs. */
  readonly logs: string[] = [];
  /** Every init container run of a DaemonSet pod, in order. */
  readonly initContainerRuns: Array<{ pod: string; node: string; container: string; code: number | null; output: string }> = [];
  failure: Error | undefined;

  /**
   * `primaryNode` places the StatefulSet's pod on that node, so that it shares the node's hostPath
   * directories with the DaemonSet pod there; without it the primary has a node directory of its own.
   */
  constructor(
    private readonly api: TestApiServer,
    private readonly root: string,
    private readonly options: { primaryNode?: string } = {},
  ) {}

  /** Starts reacting to StatefulSet writes and to DaemonSet pods placed on nodes. */
  attach(): void {
    this.api.onObjectWritten = (object) => {
      if (object['kind'] === 'Pod') return this.admitDaemonPod(object);
      if (object['kind'] !== 'StatefulSet') return;
      const snapshot = structuredClone(object);
      this.pending = this.pending.then(() => this.reconcile(snapshot)).catch((error: unknown) => {
        this.failure = error instanceof Error ? error : new Error(String(error));
      });
    };
  }

  /** Starts running a DaemonSet pod that was placed on a node, once. */
  private admitDaemonPod(pod: Json): void {
    const owned = (pod['metadata'].ownerReferences ?? []).some((reference: Json) => reference.kind === 'DaemonSet');
    const key = `${pod['metadata'].namespace}/${pod['metadata'].name}`;
    if (!owned || typeof pod['spec'].nodeName !== 'string' || this.stopping || this.daemonPods.has(key)) return;
    const run = this.runDaemonPod(pod).catch((error: unknown) => {
      this.failure ??= error instanceof Error ? error : new Error(String(error));
    });
    this.daemonPods.set(key, run);
  }

  /** Runs the pod's init containers until all succeed, with back-off between attempts, then marks the pod ready. */
  private async runDaemonPod(pod: Json): Promise<void> {
    const namespace: string = pod['metadata'].namespace;
    const name: string = pod['metadata'].name;
    for (let attempt = 0; ; attempt++) {
      if (this.stopping || this.api.get('v1', 'Pod', namespace, name) === undefined) return;
      if (await this.runInitContainers(pod)) {
        this.api.setPodReady(namespace, name);
        return;
      }
      // The real kubelet starts at 10 s and doubles up to 5 min; a test cannot wait that long.
      await sleep(Math.min(100 * 2 ** attempt, 2000));
    }
  }

  /** Runs each init container of the pod once, in order; returns false at the first that fails. */
  private async runInitContainers(pod: Json): Promise<boolean> {
    const namespace: string = pod['metadata'].namespace;
    const podName: string = pod['metadata'].name;
    const node: string = pod['spec'].nodeName;
    for (const container of (pod['spec'].initContainers ?? []) as Json[]) {
      if (container['name'] === CONTAINER_NAMES.preparePlatform) continue;
      const { code, output } = await this.runContainer(pod, container);
      this.initContainerRuns.push({ pod: podName, node, container: container['name'], code, output });
      this.api.setPodLog(namespace, podName, container['name'], output);
      if (code !== 0) return false;
    }
    return true;
  }

  /** Runs one container's command as a process, with its volume mounts mapped to the node's directories. */
  private async runContainer(pod: Json, container: Json): Promise<{ code: number | null; output: string }> {
    const nodeRoot = join(this.root, 'nodes', pod['spec'].nodeName);
    const mounts = ((container['volumeMounts'] ?? []) as Json[]).map((mount) => ({
      mountPath: mount.mountPath as string,
      dir: this.podVolumeDir(pod, mount.name, nodeRoot),
    }));
    mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);
    const remap = (text: string): string => {
      const mount = mounts.find((candidate) => text === candidate.mountPath || text.startsWith(`${candidate.mountPath}/`));
      return mount === undefined ? text : mount.dir + text.slice(mount.mountPath.length);
    };

    let words = [...((container['command'] ?? []) as string[]), ...((container['args'] ?? []) as string[])].map((word) => word.replace(IMAGE_CAS_CLI, casCliPath()));
    for (const serviceUrl of new Set(words.flatMap((word) => word.match(/https:\/\/[a-z0-9-]+\.[a-z0-9-]+\.svc(?::\d+)?/g) ?? []))) {
      const inCluster = new URL(serviceUrl);
      const loopback = this.resolveService(inCluster);
      if (loopback === undefined) return { code: 1, output: `test kubelet: service ${inCluster.host} has no endpoints\n` };
      words = words.map((word) => word.replace(pinFileName(inCluster), pinFileName(loopback)).replace(inCluster.origin, loopback.origin));
    }
    words = words.map(remap);
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] };
    for (const variable of (container['env'] ?? []) as Json[]) env[variable.name] = remap(variable.value);

    return new Promise((resolve, reject) => {
      const child = spawn(words[0]!, words.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
      this.children.add(child);
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => {
        this.children.delete(child);
        resolve({ code, output });
      });
    });
  }

  /**
   * Returns the loopback URL of the running CAS behind a service URL: the Service's selector must match the
   * pod template of a StatefulSet whose CAS process runs.
   */
  private resolveService(url: URL): URL | undefined {
    const [service, namespace] = url.hostname.split('.');
    const selector: Record<string, string> | undefined = this.api.get('v1', 'Service', namespace, service!)?.['spec']?.selector;
    if (selector === undefined) return undefined;
    for (const [key, { cas }] of this.running) {
      const [runningNamespace, statefulSetName] = key.split('/');
      if (runningNamespace !== namespace) continue;
      const labels: Record<string, string> = this.api.get('apps/v1', 'StatefulSet', namespace, statefulSetName!)?.['spec'].template.metadata.labels ?? {};
      if (Object.entries(selector).every(([label, value]) => labels[label] === value)) return new URL(cas.url);
    }
    return undefined;
  }

  /**
   * Returns the host directory behind one volume of a DaemonSet pod on the node whose root is `nodeRoot`.
   * Secret volumes show the Secret as it is now, as the kubelet refreshes them.
   */
  private podVolumeDir(pod: Json, volumeName: string, nodeRoot: string): string {
    const namespace: string = pod['metadata'].namespace;
    const podRoot = join(nodeRoot, 'pods', pod['metadata'].name);
    const volume: Json | undefined = pod['spec'].volumes.find((candidate: Json) => candidate.name === volumeName);
    if (volume === undefined) throw new Error(`volume ${volumeName} is mounted but not defined`);
    if (volume['hostPath'] !== undefined) return makeDir(join(nodeRoot, 'host', volume['hostPath'].path));
    if (volume['emptyDir'] !== undefined) return makeDir(join(podRoot, 'empty', volumeName));
    if (volume['secret'] !== undefined) {
      const dir = join(podRoot, 'secrets', volumeName);
      rmSync(dir, { recursive: true, force: true });
      makeDir(dir);
      const secret = this.api.get('v1', 'Secret', namespace, volume['secret'].secretName);
      if (secret === undefined && volume['secret'].optional !== true) throw new Error(`secret ${volume['secret'].secretName} not found`);
      for (const [file, value] of Object.entries((secret?.['data'] ?? {}) as Record<string, string>)) {
        // Group-readable, as the kubelet writes Secret files for a pod with fsGroup.
        writeFileSync(join(dir, file), Buffer.from(value, 'base64'), { mode: 0o440 });
      }
      return dir;
    }
    throw new Error(`volume ${volumeName} has a type the test kubelet does not support`);
  }

  /** Log lines of every CAS process, running or stopped. */
  logLines(): string[] {
    const running = [...this.running.values()].flatMap(({ cas }) => [...cas.logLines, cas.stderr()]);
    return [...this.logs, ...running];
  }

  /** Returns the loopback URL of the one running CAS. */
  primaryUrl(): string {
    const first = [...this.running.values()][0];
    if (first === undefined) throw new Error('no CAS is running');
    return first.cas.url;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const child of this.children) child.kill('SIGTERM');
    await Promise.all(this.daemonPods.values());
    await this.pending;
    for (const { cas } of this.running.values()) {
      await cas.stop();
      this.logs.push(...cas.logLines, cas.stderr());
    }
    this.running.clear();
  }

  private async reconcile(statefulSet: Json): Promise<void> {
    const namespace: string = statefulSet['metadata'].namespace;
    const name: string = statefulSet['metadata'].name;
    const key = `${namespace}/${name}`;
    const generation: number = statefulSet['metadata'].generation;
    const current = this.running.get(key);
    if (current !== undefined && current.generation === generation) return;
    if (current !== undefined) {
      await current.cas.stop();
      this.logs.push(...current.cas.logLines, current.cas.stderr());
      this.running.delete(key);
    }

    if (this.options.primaryNode !== undefined) {
      const pod = this.api.get('v1', 'Pod', namespace, `${name}-0`);
      if (pod !== undefined) pod['spec'] = { ...pod['spec'], nodeName: this.options.primaryNode };
    }
    const cas = await this.startPod(statefulSet);
    this.running.set(key, { generation, cas });
    await this.waitReady(cas, statefulSet);
    this.api.setStatefulSetReady(namespace, name);
  }

  private async startPod(statefulSet: Json): Promise<CasProcess> {
    const namespace: string = statefulSet['metadata'].namespace;
    const name: string = statefulSet['metadata'].name;
    const podSpec: Json = statefulSet['spec'].template.spec;
    const container: Json = podSpec['containers'].find((candidate: Json) => candidate.name === CONTAINER_NAMES.server);

    const mounts: Array<{ mountPath: string; dir: string }> = [];
    for (const mount of container['volumeMounts'] as Json[]) {
      mounts.push({ mountPath: mount.mountPath, dir: this.volumeDir(statefulSet, mount.name) });
    }
    mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);

    const args: string[] = (container['args'] as string[]).map((arg, index, all) => {
      if (all[index - 1] === '--listen') return '127.0.0.1:0';
      const mount = mounts.find((candidate) => arg === candidate.mountPath || arg.startsWith(`${candidate.mountPath}/`));
      return mount === undefined ? arg : mount.dir + arg.slice(mount.mountPath.length);
    });
    if (args[0] !== 'serve') throw new Error(`the CAS container runs "${args[0]}", not "serve"`);

    const env: NodeJS.ProcessEnv = { CAS_HOME: join(this.root, 'pod-cas-home'), KUBECONFIG: this.serviceAccountKubeconfig(namespace, podSpec) };
    for (const variable of (container['env'] ?? []) as Json[]) {
      env[variable.name] = variable.value ?? this.envValue(namespace, `${name}-0`, variable.valueFrom);
    }
    this.api.setPodLog(namespace, `${name}-0`, CONTAINER_NAMES.server, '');
    return startCasProcess({ args: args.slice(1), env, cwd: this.root });
  }

  /** Returns the host directory behind one volume of the pod, creating it. */
  private volumeDir(statefulSet: Json, volumeName: string): string {
    const namespace: string = statefulSet['metadata'].namespace;
    const name: string = statefulSet['metadata'].name;
    const claim = (statefulSet['spec'].volumeClaimTemplates ?? []).find((template: Json) => template.metadata.name === volumeName);
    if (claim !== undefined) return makeDir(join(this.root, 'claims', `${volumeName}-${name}-0`));

    const volume: Json | undefined = statefulSet['spec'].template.spec.volumes.find((candidate: Json) => candidate.name === volumeName);
    if (volume === undefined) throw new Error(`volume ${volumeName} is mounted but not defined`);
    if (volume['hostPath'] !== undefined) {
      const nodeRoot = this.options.primaryNode === undefined ? join(this.root, 'node') : join(this.root, 'nodes', this.options.primaryNode, 'host');
      return makeDir(join(nodeRoot, volume['hostPath'].path));
    }
    if (volume['emptyDir'] !== undefined) return makeDir(join(this.root, 'pod', 'empty', volumeName));
    if (volume['secret'] !== undefined) {
      const dir = makeDir(join(this.root, 'pod', 'secrets', volumeName));
      const secret = this.api.get('v1', 'Secret', namespace, volume['secret'].secretName);
      if (secret === undefined && volume['secret'].optional !== true) throw new Error(`secret ${volume['secret'].secretName} not found`);
      for (const [file, value] of Object.entries((secret?.['data'] ?? {}) as Record<string, string>)) {
        writeFileSync(join(dir, file), Buffer.from(value, 'base64'), { mode: 0o600 });
      }
      return dir;
    }
    throw new Error(`volume ${volumeName} has a type the test kubelet does not support`);
  }

  /** Resolves an env `valueFrom`: a secretKeyRef, or the downward API's pod name, namespace and uid. */
  private envValue(namespace: string, podName: string, valueFrom: Json): string {
    if (valueFrom['secretKeyRef'] !== undefined) return this.secretValue(namespace, valueFrom['secretKeyRef']);
    const fieldPath = valueFrom['fieldRef']?.fieldPath;
    if (fieldPath === 'metadata.name') return podName;
    if (fieldPath === 'metadata.namespace') return namespace;
    if (fieldPath === 'metadata.uid') {
      const uid = this.api.get('v1', 'Pod', namespace, podName)?.['metadata']?.uid;
      if (typeof uid !== 'string') throw new Error(`pod ${namespace}/${podName} has no uid`);
      return uid;
    }
    throw new Error(`env valueFrom ${JSON.stringify(valueFrom)} is not supported by the test kubelet`);
  }

  /**
   * Plays the service account token mount. A pod whose spec (else whose ServiceAccount) sets
   * `automountServiceAccountToken: true` gets a kubeconfig for the test API server in KUBECONFIG, which is
   * what `loadFromDefault()` reads before the in-cluster files, which a test cannot write. Any other pod
   * gets none, so a process that calls the API without a mounted token fails as it would in a cluster.
   */
  private serviceAccountKubeconfig(namespace: string, podSpec: Json): string | undefined {
    const serviceAccount = this.api.get('v1', 'ServiceAccount', namespace, podSpec['serviceAccountName'] ?? 'default');
    const automount = podSpec['automountServiceAccountToken'] ?? serviceAccount?.['automountServiceAccountToken'] ?? true;
    if (automount !== true) return undefined;
    const dir = makeDir(join(this.root, 'pod', 'serviceaccount'));
    const file = join(dir, 'kubeconfig');
    writeFileSync(file, this.api.kubeconfig(namespace), { mode: 0o600 });
    return file;
  }

  private secretValue(namespace: string, ref: { name: string; key: string }): string {
    const secret = this.api.get('v1', 'Secret', namespace, ref.name);
    const value = secret?.['data']?.[ref.key];
    if (typeof value !== 'string') throw new Error(`secretKeyRef ${ref.name}/${ref.key} not found`);
    return Buffer.from(value, 'base64').toString('utf8');
  }

  /** Polls the readiness probe as the kubelet does, then publishes the port for port-forwarding. */
  private async waitReady(cas: CasProcess, statefulSet: Json): Promise<void> {
    const namespace: string = statefulSet['metadata'].namespace;
    const podName = `${statefulSet['metadata'].name}-0`;
    const container: Json = statefulSet['spec'].template.spec.containers[0];
    const probe: Json = container['readinessProbe'].httpGet;
    const apiPort: number = container['ports'].find((port: Json) => port.name === PORT_NAMES.api).containerPort;
    const local = new URL(cas.url);
    this.api.setPortForwardTarget(namespace, podName, apiPort, { host: local.hostname, port: Number(local.port) });

    for (let attempt = 0; attempt < 100; attempt++) {
      if ((await probeStatus(local, probe.path, probe.scheme)) === 200) return;
      await sleep(100);
    }
    throw new Error(`the readiness probe ${probe.path} of ${podName} never succeeded`);
  }
}

function makeDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  return path;
}

/** Sends one HTTPS probe and returns its status (0 on failure); like the kubelet, it does not verify the certificate. */
function probeStatus(base: URL, path: string, scheme: string): Promise<number> {
  if (scheme !== 'HTTPS') return Promise.resolve(0);
  return new Promise((resolve) => {
    const req = request({ host: base.hostname, port: base.port, path, method: 'GET', rejectUnauthorized: false, timeout: 3000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
