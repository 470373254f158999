import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../server/testing/cas-process.js';
import { casCliPath } from '../testing/paths.js';
import type { CasStatus } from './status-types.js';

/**
 * Two `cas serve` processes on one data directory with the lock-file lease: the second is a standby. Its
 * metrics and `cas status` report the standby role and name the primary.
 */

interface StandbyProcess {
  child: ChildProcess;
  url: string;
  metricsUrl: string;
}

/** Starts `cas serve` and resolves once it logs both its standby URL and its metrics URL. */
async function startStandby(args: string[]): Promise<StandbyProcess> {
  const child = spawn(process.execPath, [casCliPath(), 'serve', ...args], { env: { ...process.env, CAS_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    let url: string | undefined;
    let metricsUrl: string | undefined;
    const timer = setTimeout(() => reject(new Error(`the standby did not start within 30 s: ${lines.join('\n')}`)), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'CAS standby listening') url = entry.url;
      if (entry.msg === 'metrics listening') metricsUrl = entry.url;
      if (url !== undefined && metricsUrl !== undefined) {
        clearTimeout(timer);
        resolve({ child, url, metricsUrl });
      }
    });
    child.once('exit', (code) => reject(new Error(`the standby exited with ${code}: ${lines.join('\n')}`)));
  });
}

describe('standby status and metrics', () => {
  const root = tempDir('standby');
  const dataDir = join(root, 'data');
  const args = ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--no-snapshots'];
  let primary: CasProcess | undefined;
  let standby: StandbyProcess | undefined;

  after(async () => {
    if (standby !== undefined && standby.child.exitCode === null) {
      const exited = new Promise((resolve) => standby!.child.once('exit', resolve));
      standby.child.kill('SIGTERM');
      await exited;
    }
    await primary?.stop();
  });

  it('reports the standby role', async () => {
    primary = await startCasProcess({ args });
    standby = await startStandby(args);

    const metrics = await (await fetch(standby.metricsUrl)).text();
    assert.match(metrics, /^cas_role\{role="standby"\} 1$/m);
    assert.match(metrics, /^cas_role\{role="primary"\} 0$/m);
    assert.match(metrics, /^cas_lease_held 0$/m);
    assert.doesNotMatch(metrics, /^cas_sessions /m, 'a standby has no database open');

    const status = await runCas(['status', '--cas', standby.url, '--output', 'json'], { CAS_HOME: join(root, 'home') });
    assert.equal(status.code, 0, status.stderr);
    const body = JSON.parse(status.stdout) as CasStatus;
    assert.equal(body.role, 'standby');
    assert.equal(body.mode, 'simulation');
    // NOTE: with --listen 127.0.0.1:0 the lease record names the port the primary had as a standby, not
    // the one its CAS server bound later, so only the form of the URL is checked here.
    assert.match((body.primary as { url?: string } | null)?.url ?? '', /^https:\/\/127\.0\.0\.1:\d+$/);

    const text = await runCas(['status', '--cas', standby.url], { CAS_HOME: join(root, 'home') });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^role: +standby$/m);
    assert.match(text.stdout, /^primary: +\{.*"url":"https:\/\/127\.0\.0\.1:\d+"/m);
  });
});
