import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
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
 * NOTE: init containers are not run. The platform-directory `chown` needs root and a real node, and
 * `cas serve` creates its own platform key in simulation mode.
 */
export class TestKubelet {
  private readonly running = new Map<string, { generation: number; cas: CasProcess }>();
  private pending: Promise<void> = Promise.resolve();
  /** Output of every CAS process started, for checks that scan logs. */
  readonly logs: string[] = [];
  failure: Error | undefined;

  constructor(
    private readonly api: TestApiServer,
    private readonly root: string,
  ) {}

  /** Starts reacting to StatefulSet writes. */
  attach(): void {
    this.api.onObjectWritten = (object) => {
      if (object['kind'] !== 'StatefulSet') return;
      const snapshot = structuredClone(object);
      this.pending = this.pending.then(() => this.reconcile(snapshot)).catch((error: unknown) => {
        this.failure = error instanceof Error ? error : new Error(String(error));
      });
    };
  }

  /**
   * Runs the backup DaemonSet's registration init container for one node, as its pod on that node would,
   * and returns its exit code and output. The node's platform directory is the hostPath directory of that
   * node. `casAddress` replaces cluster DNS: the in-cluster CAS URL in the arguments and the pin file
   * name are replaced by the loopback address of the running CAS.
   */
  async runBackupRegistration(daemonSet: Json, node: string, casAddress: { inClusterUrl: string; loopbackUrl: string }): Promise<{ code: number | null; output: string }> {
    const podSpec: Json = daemonSet['spec'].template.spec;
    const container: Json = podSpec['initContainers'].find((candidate: Json) => candidate.name === CONTAINER_NAMES.registerBackup);
    const nodeRoot = join(this.root, 'nodes', node);
    const mounts = (container['volumeMounts'] as Json[]).map((mount) => ({
      mountPath: mount.mountPath as string,
      dir: this.podVolumeDir(daemonSet, mount.name, nodeRoot),
    }));
    mounts.sort((a, b) => b.mountPath.length - a.mountPath.length);
    const remap = (text: string): string => {
      const mount = mounts.find((candidate) => text === candidate.mountPath || text.startsWith(`${candidate.mountPath}/`));
      return mount === undefined ? text : mount.dir + text.slice(mount.mountPath.length);
    };

    const inCluster = new URL(casAddress.inClusterUrl);
    const loopback = new URL(casAddress.loopbackUrl);
    const words = [...(container['command'] as string[]), ...(container['args'] as string[])].map((word) =>
      word
        .replace(IMAGE_CAS_CLI, casCliPath())
        .replace(pinFileName(inCluster), pinFileName(loopback))
        .replace(inCluster.origin, loopback.origin),
    ).map(remap);
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] };
    for (const variable of (container['env'] ?? []) as Json[]) env[variable.name] = remap(variable.value);

    return new Promise((resolve, reject) => {
      const child = spawn(words[0]!, words.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, output }));
    });
  }

  /** Returns the host directory behind one volume of a DaemonSet pod on the node whose root is `nodeRoot`. */
  private podVolumeDir(workload: Json, volumeName: string, nodeRoot: string): string {
    const namespace: string = workload['metadata'].namespace;
    const volume: Json | undefined = workload['spec'].template.spec.volumes.find((candidate: Json) => candidate.name === volumeName);
    if (volume === undefined) throw new Error(`volume ${volumeName} is mounted but not defined`);
    if (volume['hostPath'] !== undefined) return makeDir(join(nodeRoot, 'host', volume['hostPath'].path));
    if (volume['emptyDir'] !== undefined) return makeDir(join(nodeRoot, 'pod', 'empty', volumeName));
    if (volume['secret'] !== undefined) {
      const dir = makeDir(join(nodeRoot, 'pod', 'secrets', volumeName));
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

    const env: NodeJS.ProcessEnv = { CAS_HOME: join(this.root, 'pod-cas-home') };
    for (const variable of (container['env'] ?? []) as Json[]) {
      env[variable.name] = variable.value ?? this.secretValue(namespace, variable.valueFrom.secretKeyRef);
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
    if (volume['hostPath'] !== undefined) return makeDir(join(this.root, 'node', volume['hostPath'].path));
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
