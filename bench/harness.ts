import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { cpus, loadavg, release, tmpdir, totalmem, type as osType } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { casCliPath } from '../src/testing/paths.js';

/** Options that every figure receives from bench/main.ts. */
export interface BenchOptions {
  /** `--quick`: shorter runs and smaller data sets, which the page states per figure. */
  quick: boolean;
  /** Prints one progress line on stderr. */
  progress: (message: string) => void;
}

/** One pass-or-miss comparison of a figure against its target. */
export interface FigureCheck {
  /** Name of the compared quantity, e.g. "requests/s ÷ crypto-bound rate". */
  label: string;
  /** The compared value, already formatted with its unit. */
  value: string;
  /** The target, e.g. "≥ 0.8". */
  target: string;
  met: boolean;
}

/** A number measured for a figure, with its unit. */
export interface FigureValue {
  label: string;
  value: string;
}

/** The result of one figure, rendered into docs/benchmarks.md. */
export interface FigureResult {
  number: number;
  title: string;
  /** Set when the feature under test does not exist yet; nothing else is reported then. */
  missing?: string;
  /** Set when the run threw: the first line of the error. */
  failed?: string;
  values: FigureValue[];
  /** The limit measured in the same run, with how it was derived. */
  limit?: FigureValue[];
  checks: FigureCheck[];
  /** Method of measurement, one sentence per line. */
  method: string[];
  /** Remaining gaps, their causes and profile findings. */
  notes: string[];
}

/** A figure module: runs its measurement and returns the result. */
export type Figure = (options: BenchOptions) => Promise<FigureResult>;

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  nodeVersion: string;
  os: string;
  /** One-minute load average when the suite started: other tenants' work shows here. */
  loadAverage: number;
}

export function machineInfo(): MachineInfo {
  const cpuList = cpus();
  return {
    cores: cpuList.length,
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    memoryGiB: totalmem() / 2 ** 30,
    nodeVersion: process.version,
    os: `${osType()} ${release()}`,
    loadAverage: loadavg()[0] ?? 0,
  };
}

/** Returns the value at quantile `q` (0..1) of `samples` by the nearest-rank method; NaN for no samples. */
export function percentile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Calls `fn` repeatedly for about `durationMs` and returns calls per second. */
export function measureSyncRate(fn: () => void, durationMs: number): number {
  // A short warm-up, so the JIT and OpenSSL's lazy initialisation are not measured.
  for (let i = 0; i < 20; i++) fn();
  let calls = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < durationMs) {
    for (let i = 0; i < 10; i++) fn();
    calls += 10;
    elapsed = performance.now() - started;
  }
  return (calls * 1000) / elapsed;
}

/** Single-thread rates of ECDSA P-256 with SHA-256 in node:crypto (OpenSSL), the primitive CAS signs and verifies with. */
export interface EcdsaRates {
  signPerSecond: number;
  verifyPerSecond: number;
}

/**
 * Measures node:crypto's ECDSA P-256 / SHA-256 sign and verify rates on one thread, over a 1 KiB message
 * (about the size of a signed certificate body or audit entry) with KeyObjects, as the CAS code calls them.
 */
export function measureEcdsaP256(durationMs: number): EcdsaRates {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const message = randomBytes(1024);
  const signature = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const signPerSecond = measureSyncRate(() => {
    sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  }, durationMs);
  const verifyPerSecond = measureSyncRate(() => {
    if (!verify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)) throw new Error('ECDSA self-check failed');
  }, durationMs);
  return { signPerSecond, verifyPerSecond };
}

/** Averages two ECDSA rate measurements, e.g. one taken before and one after a run. */
export function meanEcdsaRates(first: EcdsaRates, second: EcdsaRates): EcdsaRates {
  return { signPerSecond: (first.signPerSecond + second.signPerSecond) / 2, verifyPerSecond: (first.verifyPerSecond + second.verifyPerSecond) / 2 };
}

/** True when `key` is an EC key on P-256. */
export function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

/** Creates a temporary directory under os.tmpdir() (the same disk as the CAS data directories the suite uses). */
export function benchTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `cas-bench-${prefix}-`));
}

export function removeDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A `cas serve` child process. */
export interface CasServeProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** The last log lines (pino JSON), for error messages. */
  recentLog: () => string;
  /** Sends SIGTERM, waits for the exit, and sends SIGKILL after 20 s. */
  stop(): Promise<void>;
}

const RECENT_LOG_LINES = 40;

/**
 * Spawns the built `cas serve` on 127.0.0.1:`port` (metrics on a free port) with the given arguments and
 * environment, without waiting for it. The log is drained, because a full stdout pipe would stall the
 * server, and its last lines are kept.
 */
export function spawnCasServe(port: number, args: string[], env: NodeJS.ProcessEnv = {}): CasServeProcess {
  // CAS_BENCH_CPU_PROF=DIR writes a V8 CPU profile of every server process into DIR when it stops.
  const profileDir = process.env['CAS_BENCH_CPU_PROF'];
  const nodeArgs = profileDir === undefined || profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir];
  // The metrics endpoint stays on, as by default, but on a free port: its default 9091 may be taken.
  const listenArgs = ['--listen', `127.0.0.1:${port}`, '--metrics-listen', '127.0.0.1:0'];
  const child = spawn(process.execPath, [...nodeArgs, casCliPath(), 'serve', ...listenArgs, ...args], {
    // The figures state that the server runs at the default log level, whatever CAS_LOG_LEVEL the caller's environment sets.
    env: { ...process.env, CAS_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recent: string[] = [];
  const keep = (line: string): void => {
    recent.push(line);
    if (recent.length > RECENT_LOG_LINES) recent.shift();
  };
  createInterface({ input: child.stdout! }).on('line', keep);
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  return {
    child,
    port,
    url: `https://127.0.0.1:${port}`,
    recentLog: () => recent.join('\n'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Sends one GET over HTTPS without a client certificate and resolves with the status code (0 on a connection error). */
export async function httpsStatus(url: string, timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    // The server certificate is self-signed; a health probe only needs the status code.
    const req = httpsRequest(url, { method: 'GET', rejectUnauthorized: false, timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
    req.end();
  });
}

/**
 * Polls `url` every `intervalMs` until it returns 200 and resolves with the time of that response
 * (performance.now()). Rejects when `process` exits first or after `timeoutMs`.
 */
export async function waitForStatus200(server: CasServeProcess, path: string, options: { intervalMs: number; timeoutMs: number }): Promise<number> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`cas serve exited (${server.child.exitCode ?? server.child.signalCode}) before ${path} returned 200; log:\n${server.recentLog()}`);
    }
    const status = await httpsStatus(`${server.url}${path}`, options.intervalMs * 50);
    if (status === 200) return performance.now();
    if (performance.now() > deadline) {
      throw new Error(`cas serve did not return 200 on ${path} within ${options.timeoutMs} ms; log:\n${server.recentLog()}`);
    }
    await sleep(options.intervalMs);
  }
}

/** Resident set size and its peak of a Linux process, in bytes, from /proc/PID/status. */
export function processMemory(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (match === null) throw new Error(`/proc/${pid}/status has no ${name} line`);
    return Number(match[1]) * 1024;
  };
  return { rssBytes: field('VmRSS'), peakRssBytes: field('VmHWM') };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Formats a number for the page with `digits` digits after the decimal point. */
export function fmt(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function mib(bytes: number): string {
  return `${fmt(bytes / 2 ** 20, 1)} MiB`;
}

/** Returns the result of a figure whose feature does not exist yet. */
export function missingFigure(number: number, title: string, feature: string): FigureResult {
  return { number, title, missing: feature, values: [], checks: [], method: [], notes: [] };
}

/**
 * Scheduler times of a Linux process's main thread (for Node.js, the event loop) so far, in milliseconds,
 * from /proc/PID/task/PID/schedstat: time on a CPU, and time runnable but waiting for one (other tenants'
 * load shows here). The rest of the wall time the thread was blocked (I/O, fsync) or idle.
 */
export function mainThreadSchedule(pid: number): { onCpuMs: number; runnableWaitMs: number } {
  const [onCpuNs, waitNs] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return { onCpuMs: (onCpuNs ?? 0) / 1e6, runnableWaitMs: (waitNs ?? 0) / 1e6 };
}

/** CPU time of this process so far (user plus system), in milliseconds. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}
