import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FILE_NAMES } from '../config/defaults.js';
import { METRIC_NAMES } from '../metrics/cas-metrics.js';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../server/testing/cas-process.js';
import type { CasStatus } from './status-types.js';

/**
 * `cas status` and the Prometheus endpoint of a real `cas serve` process (default lock-file lease, so the
 * high-availability path runs): every documented metric is exposed, and counters move when the matching
 * operation happens.
 */

const SESSION = `name: ops-app
version: "0.3"
services:
  - name: app
    command: /bin/true
    pwd: /
security:
  attestation:
    mode: none
`;

/** Parses the text exposition format into `name{labels}` → value, for the samples with a `cas_` prefix. */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('cas_')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

async function scrape(url: string): Promise<{ text: string; samples: Map<string, number> }> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return { text, samples: parseSamples(text) };
}

function sample(samples: Map<string, number>, key: string): number {
  return samples.get(key) ?? 0;
}

describe('cas status and metrics against cas serve', () => {
  const root = tempDir('ops');
  const dataDir = join(root, 'data');
  const ownerEnv = { CAS_HOME: join(root, 'owner-home') };
  const otherEnv = { CAS_HOME: join(root, 'other-home') };
  const sessionFile = join(root, 'session.yaml');
  let cas: CasProcess;
  let metricsUrl = '';

  before(async () => {
    writeFileSync(sessionFile, SESSION);
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--snapshot-interval', '1'] });
    const line = cas.logLines.map((text) => JSON.parse(text) as { msg?: string; url?: string }).find((entry) => entry.msg === 'metrics listening');
    assert.ok(line?.url !== undefined, 'cas serve logs the metrics URL');
    metricsUrl = line.url;
  });

  after(async () => {
    await cas?.stop();
  });

  it('serves metrics on their own plain HTTP port', async () => {
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.notEqual(new URL(metricsUrl).port, new URL(cas.url).port);
    const other = await fetch(new URL('/v1/status', metricsUrl));
    assert.equal(other.status, 404);
  });

  it('exposes every documented metric name', async () => {
    const { text, samples } = await scrape(metricsUrl);
    for (const name of Object.values(METRIC_NAMES)) {
      if (name.startsWith('cas_audit_webhook_')) continue; // only with --webhook
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `missing metric ${name}`);
    }
    assert.equal(sample(samples, 'cas_info{version="0.1.0",mode="simulation"}'), 1);
    assert.equal(sample(samples, 'cas_role{role="unprovisioned"}'), 1);
    assert.equal(sample(samples, 'cas_role{role="primary"}'), 0);
    assert.equal(sample(samples, 'cas_lease_held'), 1);
    assert.match(text, /^process_cpu_seconds_total /m);
  });

  it('shows the public status to any caller', async () => {
    const result = await runCas(['status', '--cas', cas.url, '--output', 'json'], otherEnv);
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as CasStatus & { certificatePinned: boolean };
    assert.equal(status.role, 'unprovisioned');
    assert.equal(status.mode, 'simulation');
    assert.equal(status.simulated, true);
    assert.equal(status.health, 'ready');
    assert.equal(status.version, '0.1.0');
    assert.equal(status.certificatePinned, false);
    assert.equal(status.owner, undefined);
  });

  it('counts session operations, attestations and releases', async () => {
    const token = readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
    assert.equal((await runCas(['provision', '--cas', cas.url, '--token', token], ownerEnv)).code, 0);
    for (const env of [ownerEnv, otherEnv]) {
      const attest = await runCas(['attest', '--cas', cas.url, '--accept-simulation'], env);
      assert.equal(attest.code, 0, attest.stderr);
    }
    const before = (await scrape(metricsUrl)).samples;

    const created = await runCas(['session', 'create', sessionFile, '--cas', cas.url], ownerEnv);
    assert.equal(created.code, 0, created.stderr);
    const fetched = await runCas(['config', 'fetch', '--session', 'ops-app', '--service', 'app', '--cas', cas.url, '--platform-dir', join(root, 'service-platform')], ownerEnv);
    assert.equal(fetched.code, 0, fetched.stderr);
    const denied = await runCas(['session', 'read', 'ops-app', '--cas', cas.url], otherEnv);
    assert.notEqual(denied.code, 0);

    const afterwards = (await scrape(metricsUrl)).samples;
    const delta = (key: string): number => sample(afterwards, key) - sample(before, key);
    assert.equal(delta('cas_session_operations_total{operation="created",outcome="success"}'), 1);
    assert.equal(delta('cas_attestations_total{tee="simulated",result="accepted"}'), 1);
    assert.equal(delta('cas_configuration_releases_total'), 1);
    assert.ok(delta('cas_request_rejections_total{code="PERMISSION_DENIED"}') >= 1, 'the denied read is counted by its error code');
    assert.equal(sample(afterwards, 'cas_sessions'), 1);
    assert.equal(sample(afterwards, 'cas_role{role="primary"}'), 1);
    assert.ok(delta('cas_http_request_duration_seconds_count{method="POST",route="/v1/sessions",status_code="201"}') >= 1);
    assert.ok(delta('cas_audit_append_duration_seconds_count{result="success"}') >= 3);
    assert.ok(delta('cas_audit_entries_total{event="config.released"}') >= 1);
  });

  it('reports snapshot age and duration', async () => {
    // The scheduler snapshots every second while the database changes; the session above changed it.
    let samples = (await scrape(metricsUrl)).samples;
    for (let attempt = 0; attempt < 100 && sample(samples, 'cas_snapshot_duration_seconds_count') === 0; attempt += 1) {
      await sleep(200);
      samples = (await scrape(metricsUrl)).samples;
    }
    assert.ok(sample(samples, 'cas_snapshot_duration_seconds_count') >= 1);
    assert.ok(samples.has('cas_snapshot_newest_age_seconds'));
    assert.ok(sample(samples, 'cas_snapshot_newest_timestamp_seconds') > 1_700_000_000);
    assert.equal(sample(samples, 'cas_snapshot_failures_total'), 0);
  });

  it('shows the owner snapshots, audit head, backups and lease', async () => {
    const result = await runCas(['status', '--cas', cas.url, '--output', 'json'], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as CasStatus & { certificatePinned: boolean };
    assert.equal(status.role, 'primary');
    assert.equal(status.certificatePinned, true);
    const owner = status.owner;
    assert.ok(owner !== undefined);
    assert.equal(owner.sessions, 1);
    assert.ok(owner.audit.seq >= 4);
    assert.match(owner.audit.hash, /^[0-9a-f]{64}$/);
    assert.ok(owner.snapshots.newest !== null);
    assert.equal(owner.snapshots.lastAttempt?.result, 'success');
    assert.equal(owner.backupPlatforms.length, 1);
    assert.equal(owner.backupPlatforms[0]?.thisInstance, true);
    assert.equal(owner.lease.kind, 'lockfile');
    const lease = owner.lease as { heldByThisInstance?: boolean; expiresAt?: string | null };
    assert.equal(lease.heldByThisInstance, true);
    assert.equal(typeof lease.expiresAt, 'string');
    assert.ok(Date.parse(lease.expiresAt!) > Date.parse('2020-01-01'));
    assert.equal(owner.webhook, null);

    // The head names an entry that is on disk: its seq and hash are those of one line of the log file.
    const entries = readFileSync(join(dataDir, 'audit', FILE_NAMES.auditLog), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { seq: number; hash: string });
    assert.equal(entries.find((entry) => entry.seq === owner.audit.seq)?.hash, owner.audit.hash);
  });

  it('hides the owner details from other clients', async () => {
    const result = await runCas(['status', '--cas', cas.url, '--output', 'json'], otherEnv);
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as CasStatus;
    assert.equal(status.role, 'primary');
    assert.equal(status.owner, undefined);
  });

  it('prints the status as text with the mode spelled out', async () => {
    const result = await runCas(['status', '--cas', cas.url], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^role: +primary$/m);
    assert.match(result.stdout, /^mode: +simulation \(simulated evidence proves nothing/m);
    assert.match(result.stdout, /^audit head: +seq \d+, hash [0-9a-f]{64}$/m);
    assert.match(result.stdout, /^lease: +.+held by /m);
  });
});

describe('cas serve metrics flags', () => {
  it('serves no metrics with --no-metrics', async () => {
    const root = tempDir('ops-nometrics');
    const cas = await startCasProcess({ args: ['--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--lease', 'none', '--no-snapshots', '--no-metrics'] });
    try {
      assert.ok(!cas.logLines.some((line) => line.includes('"metrics listening"')));
      assert.ok(cas.logLines.some((line) => line.includes('metrics are disabled')));
    } finally {
      await cas.stop();
    }
  });

  it('rejects a malformed --metrics-listen', async () => {
    const root = tempDir('ops-badmetrics');
    const result = await runCas(['serve', '--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--metrics-listen', 'nowhere'], {});
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /invalid --metrics-listen "nowhere"/);
  });
});
