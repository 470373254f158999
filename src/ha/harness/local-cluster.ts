import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CasClient } from '../../client/cas-client.js';
import { CLIENT_CERT_FILE, CLIENT_KEY_FILE } from '../../client/home.js';
import { FILE_NAMES } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';
import { casCliPath } from '../../testing/paths.js';

/**
 * A local multi-node CAS for tests and benchmarks: several "nodes" on one machine, each with its own
 * platform directory (its platform key) and loopback port, sharing one data directory that serves as
 * the database volume. Every node runs the built `cas serve --lease lockfile` as a child process, which
 * the harness starts, kills with SIGKILL, pauses with SIGSTOP and resumes with SIGCONT.
 *
 * Each node gets its own CAS_NODE_NAME, so the lease treats the nodes as separate machines: a standby
 * takes over from a killed primary only after the lease expires, as it would across machines.
 */
export interface LocalClusterOptions {
  /** Node names, for example `['node-a', 'node-b']`. */
  nodes: string[];
  /** Lease period in seconds; tests use 2 to 3. */
  leaseDurationSeconds: number;
  /** Extra `cas serve` flags for every node, e.g. `['--no-snapshots']`. */
  serveArguments?: string[];
  /** Root directory; default a new temporary directory, removed by `destroy()`. */
  root?: string;
}

export type SignalName = 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM';

/** One `cas serve` process of the cluster. */
export class CasNodeProcess {
  readonly logLines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderrText = '';
  private readonly lineWaiters = new Set<() => void>();

  constructor(
    readonly node: string,
    readonly url: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrText += chunk.toString('utf8');
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.logLines.push(line);
      for (const wake of this.lineWaiters) wake();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  signal(name: SignalName): void {
    if (this.running) this.child.kill(name);
  }

  /** Parsed log entries whose `msg` equals `message`. */
  entries(message: string): Array<Record<string, unknown>> {
    const found: Array<Record<string, unknown>> = [];
    for (const line of this.logLines) {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry['msg'] === message) found.push(entry);
      } catch {
        // Not JSON (a crash trace); it stays in logLines for error messages.
      }
    }
    return found;
  }

  /** Waits until the process has logged `message` at least `count` times; rejects after `timeoutMs` or on exit. */
  async waitForLog(message: string, timeoutMs: number, count = 1): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.entries(message);
      if (found.length >= count) return found[count - 1]!;
      if (!this.running) {
        throw new CasError('TIMEOUT', `node ${this.node} exited before logging "${message}"; stderr: ${this.stderrText.slice(-2000)}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new CasError('TIMEOUT', `node ${this.node} did not log "${message}" within ${timeoutMs} ms; last lines: ${this.logLines.slice(-5).join('\n')}`);
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.lineWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(remaining, 250));
        this.lineWaiters.add(wake);
        void this.exited.then(wake);
      });
    }
  }

  /** Waits until this node serves as primary (it logged `serving as primary` `count` times in total). */
  async waitUntilPrimary(timeoutMs: number, count = 1): Promise<void> {
    await this.waitForLog('serving as primary', timeoutMs, count);
  }

  /** Sends SIGTERM and waits for the exit, SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
      const result = await this.exited;
      clearTimeout(timer);
      return result;
    }
    return this.exited;
  }
}

export class LocalCluster {
  readonly root: string;
  /** The shared data directory: the "volume" that every node opens when it becomes primary. */
  readonly dataDir: string;
  /** CAS_HOME of the CAS owner (client key and pinned certificates). */
  readonly ownerHome: string;
  private readonly ports = new Map<string, number>();
  private readonly metricsPorts = new Map<string, number>();
  private readonly processes: CasNodeProcess[] = [];
  private readonly ownRoot: boolean;

  private constructor(
    private readonly options: LocalClusterOptions,
    root: string,
    ownRoot: boolean,
  ) {
    this.root = root;
    this.ownRoot = ownRoot;
    this.dataDir = join(root, 'volume');
    this.ownerHome = join(root, 'owner-home');
  }

  /** Creates the directories and reserves a loopback port per node. Starts nothing. */
  static async create(options: LocalClusterOptions): Promise<LocalCluster> {
    const ownRoot = options.root === undefined;
    const root = options.root ?? mkdtempSync(join(tmpdir(), 'cas-ha-'));
    const cluster = new LocalCluster(options, root, ownRoot);
    for (const node of options.nodes) {
      mkdirSync(cluster.platformDir(node), { recursive: true, mode: 0o700 });
      cluster.ports.set(node, await freeLoopbackPort());
      cluster.metricsPorts.set(node, await freeLoopbackPort());
    }
    return cluster;
  }

  platformDir(node: string): string {
    this.assertNode(node);
    return join(this.root, 'platforms', node);
  }

  url(node: string): string {
    this.assertNode(node);
    return `https://127.0.0.1:${this.ports.get(node)!}`;
  }

  /** URL of the node's Prometheus metrics endpoint. */
  metricsUrl(node: string): string {
    this.assertNode(node);
    return `http://127.0.0.1:${this.metricsPorts.get(node)!}/metrics`;
  }

  get nodes(): string[] {
    return [...this.options.nodes];
  }

  /**
   * Starts `cas serve` on `node` and resolves once it listens (as standby or primary). Rejects with its
   * output if it exits first or does not listen within `timeoutMs`.
   */
  async start(node: string, timeoutMs = 30_000): Promise<CasNodeProcess> {
    const url = this.url(node);
    const child = spawn(
      process.execPath,
      [
        casCliPath(),
        'serve',
        '--data-dir', this.dataDir,
        '--platform-dir', this.platformDir(node),
        '--listen', url.replace('https://', ''),
        '--lease', 'lockfile',
        '--lease-duration', String(this.options.leaseDurationSeconds),
        '--metrics-listen', `127.0.0.1:${this.metricsPorts.get(node)!}`,
        ...(this.options.serveArguments ?? []),
      ],
      { env: { ...process.env, CAS_LOG_LEVEL: 'info', CAS_NODE_NAME: node }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const started = new CasNodeProcess(node, url, child);
    this.processes.push(started);
    await started.waitForLog('CAS standby listening', timeoutMs);
    return started;
  }

  /** Reads the one-time provisioning token that the first primary wrote into the shared data directory. */
  provisioningToken(): string {
    return readFileSync(join(this.dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
  }

  /** Arguments and environment for running the built CLI as the CAS owner. */
  ownerEnvironment(): NodeJS.ProcessEnv {
    return { CAS_HOME: this.ownerHome };
  }

  /**
   * Creates a client with the owner's identity that accepts only `certificatePem`. That is the CAS identity,
   * which every primary loads from the shared database, so it stays the same across a failover.
   */
  ownerClient(node: string, certificatePem: string, timeoutMs = 10_000): CasClient {
    return new CasClient({ casUrl: new URL(this.url(node)), ...this.ownerIdentity(), trust: { kind: 'pinned', certificatePem }, timeoutMs });
  }

  /** Creates a client with the owner's identity that accepts any server certificate, e.g. a standby's own one. */
  unverifiedOwnerClient(node: string, timeoutMs = 10_000): CasClient {
    return new CasClient({ casUrl: new URL(this.url(node)), ...this.ownerIdentity(), trust: { kind: 'unverified' }, timeoutMs });
  }

  /** Reads the owner's TLS client key and certificate, created by the first CLI command run as the owner. */
  ownerIdentity(): { clientKeyPem: string; clientCertificatePem: string } {
    return {
      clientKeyPem: readFileSync(join(this.ownerHome, CLIENT_KEY_FILE), 'utf8'),
      clientCertificatePem: readFileSync(join(this.ownerHome, CLIENT_CERT_FILE), 'utf8'),
    };
  }

  /** Stops every process it started (SIGCONT first, so paused ones can exit) and removes a temporary root. */
  async destroy(): Promise<void> {
    await Promise.all(this.processes.map((started) => started.stop()));
    if (this.ownRoot) rmSync(this.root, { recursive: true, force: true });
  }

  private assertNode(node: string): void {
    if (!this.options.nodes.includes(node)) {
      throw new CasError('INVALID_ARGUMENT', `unknown node "${node}"; use one of this cluster's nodes: ${this.options.nodes.join(', ')}`);
    }
  }
}

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago. The harness keeps a node's port across restarts,
 * so the port is reserved now and bound later. It is taken from 20000-32767, below Linux's default ephemeral
 * range (32768-60999), so other tests that bind port 0 get ephemeral ports and cannot take it in between.
 */
export async function freeLoopbackPort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (await canBind(port)) return port;
  }
  throw new CasError('INTERNAL', 'found no free loopback port in 20000-32767 after 100 attempts');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
