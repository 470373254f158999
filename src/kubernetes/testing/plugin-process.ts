import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built plugin entry point in the same output directory as this file. */
export function pluginPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'plugin', 'main.js');
}

export interface PluginRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Creates a scratch directory that replaces the user's home: HOME (so ~/.kube/config is absent), CAS_HOME
 * and the kubeconfig file are in it.
 */
export function scratchHome(kubeconfig?: string): { dir: string; kubeconfigPath: string; casHome: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kubectl-provision-test-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  if (kubeconfig !== undefined) writeFileSync(kubeconfigPath, kubeconfig, { mode: 0o600 });
  return { dir, kubeconfigPath, casHome: join(dir, 'cas-home') };
}

/**
 * Runs the plugin (or `command`, such as kubectl) as a subprocess without blocking this process's event
 * loop, which serves the test API server the subprocess talks to. `input` becomes its standard input.
 */
export function runPlugin(
  args: string[],
  env: Record<string, string>,
  command: string[] = [process.execPath, pluginPath()],
  input?: string,
): Promise<PluginRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, [...command.slice(1), ...args], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) child.stdin!.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
