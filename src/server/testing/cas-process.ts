import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { casCliPath } from '../../testing/paths.js';

/** A `cas serve` child process on a loopback port, for tests. */
export interface CasProcess {
  url: string;
  process: ChildProcess;
  /** Every stdout line so far (pino JSON). */
  logLines: string[];
  stderr: () => string;
  /** Sends SIGTERM and resolves with the exit code (null if a signal ended it). */
  stop(): Promise<number | null>;
}

/** Creates a fresh temporary directory for one test. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `cas-${prefix}-`));
}

/**
 * Starts `cas serve` from the built CLI with `--listen 127.0.0.1:0` and resolves once it logs the address
 * it bound. Rejects with the collected output if the process exits first or takes longer than 30 s.
 */
export async function startCasProcess(options: { args: string[]; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CasProcess> {
  const child = spawn(process.execPath, [casCliPath(), 'serve', ...options.args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, CAS_LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logLines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cas serve did not start within 30 s; stderr: ${stderr}; log: ${logLines.join('\n')}`)), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logLines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === 'CAS listening' && entry.url !== undefined) {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // A line that is not JSON stays in logLines for the error message.
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`cas serve exited with ${code} before listening; stderr: ${stderr}; log: ${logLines.join('\n')}`));
    });
  });

  return {
    url,
    process: child,
    logLines,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `cas` CLI with the given arguments and environment; never rejects on a non-zero exit. */
export async function runCas(args: string[], env: NodeJS.ProcessEnv, options: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [casCliPath(), ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}
