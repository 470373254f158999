import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FILE_NAMES } from '../config/defaults.js';
import { createLogger } from '../logging/logger.js';
import { CasMetrics } from '../metrics/cas-metrics.js';
import { runCas, startCasProcess, tempDir } from '../server/testing/cas-process.js';
import type { CasStatus } from '../status/status-types.js';
import { AuditWebhook, parseWebhookUrl, type WebhookEntry } from './audit-webhook.js';

/** A webhook receiver on loopback that answers each POST with the status `respond` returns. */
async function startReceiver(respond: (attempt: number) => number): Promise<{ url: string; received: WebhookEntry[]; attempts: () => number; server: Server }> {
  const received: WebhookEntry[] = [];
  let attempts = 0;
  const server = createServer((request: IncomingMessage, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      attempts += 1;
      const status = respond(attempts);
      if (status >= 200 && status < 300) received.push(JSON.parse(body) as WebhookEntry);
      response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/audit`, received, attempts: () => attempts, server };
}

function entry(seq: number): WebhookEntry {
  return { seq, hash: seq.toString(16).padStart(64, '0'), time: new Date().toISOString(), event: 'cas.started', actor: { kind: 'cas' }, outcome: 'success', details: { mode: 'simulation', version: '0.1.0' } };
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    if (condition()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

const logger = createLogger({ level: 'silent' });
const servers: Server[] = [];
after(() => {
  for (const server of servers) server.close();
});

describe('AuditWebhook', () => {
  it('retries and keeps sequence order', async () => {
    const receiver = await startReceiver((attempt) => (attempt <= 2 ? 500 : 204));
    servers.push(receiver.server);
    const metrics = new CasMetrics({ version: '0.1.0', mode: 'simulation' });
    const webhook = new AuditWebhook({ url: receiver.url, backoffMs: 10, logger, metrics });
    for (const seq of [1, 2, 3]) webhook.enqueue(entry(seq));
    await waitFor(() => webhook.status().delivered === 3, 'three deliveries');
    assert.deepEqual(receiver.received.map((item) => item.seq), [1, 2, 3]);
    assert.equal(receiver.attempts(), 5);
    assert.equal(webhook.status().dropped, 0);
    assert.equal(webhook.status().lastError, 'HTTP 500');
    const text = await metrics.registry.metrics();
    assert.match(text, /^cas_audit_webhook_deliveries_total\{result="retry"\} 2$/m);
    assert.match(text, /^cas_audit_webhook_deliveries_total\{result="delivered"\} 3$/m);
    await webhook.close();
  });

  it('drops an entry after every retry failed', async () => {
    const receiver = await startReceiver(() => 500);
    servers.push(receiver.server);
    const webhook = new AuditWebhook({ url: receiver.url, backoffMs: 5, maxAttempts: 3, logger });
    webhook.enqueue(entry(1));
    await waitFor(() => webhook.status().dropped === 1, 'the entry to be dropped');
    assert.equal(receiver.attempts(), 3);
    assert.equal(webhook.status().queueLength, 0);
    await webhook.close();
  });

  it('reports a full queue instead of dropping silently', async () => {
    const receiver = await startReceiver(() => 503);
    servers.push(receiver.server);
    const metrics = new CasMetrics({ version: '0.1.0', mode: 'simulation' });
    const webhook = new AuditWebhook({ url: receiver.url, capacity: 2, backoffMs: 60_000, logger, metrics });
    for (const seq of [1, 2, 3, 4, 5]) webhook.enqueue(entry(seq));
    const status = webhook.status();
    assert.equal(status.queueFull, true);
    assert.equal(status.queueLength, 2);
    assert.equal(status.dropped, 3);
    const text = await metrics.registry.metrics();
    assert.match(text, /^cas_audit_webhook_queue_full 1$/m);
    assert.match(text, /^cas_audit_webhook_queue_length 2$/m);
    assert.match(text, /^cas_audit_webhook_dropped_total 3$/m);
    await webhook.close(0);
  });

  it('rejects URLs with credentials or other schemes', () => {
    assert.throws(() => parseWebhookUrl('https://user:secret@example.test/hook'), /remove the user name and password/);
    assert.throws(() => parseWebhookUrl('ftp://example.test/hook'), /expected an http or https URL/);
    assert.throws(() => parseWebhookUrl('not a url'), /invalid audit webhook URL/);
    assert.equal(parseWebhookUrl('https://siem.example.test/cas').href, 'https://siem.example.test/cas');
  });
});

describe('cas serve --audit-webhook', () => {
  it('forwards audit entries as written', async () => {
    const receiver = await startReceiver(() => 200);
    servers.push(receiver.server);
    const root = tempDir('webhook');
    const dataDir = join(root, 'data');
    const ownerEnv = { CAS_HOME: join(root, 'owner-home') };
    const cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0', '--lease', 'none', '--no-snapshots', '--audit-webhook', receiver.url] });
    try {
      const token = readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
      const provisioned = await runCas(['provision', '--cas', cas.url, '--token', token], ownerEnv);
      assert.equal(provisioned.code, 0, provisioned.stderr);
      await waitFor(() => receiver.received.some((item) => item.event === 'cas.provisioned'), 'the cas.provisioned entry');

      const lines = readFileSync(join(dataDir, 'audit', FILE_NAMES.auditLog), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { seq: number; hash: string; event: string });
      for (const item of receiver.received) {
        const written = lines.find((line) => line.seq === item.seq);
        assert.equal(written?.hash, item.hash, `entry ${item.seq} differs from the audit log`);
        assert.equal(written?.event, item.event);
      }
      assert.deepEqual(receiver.received.map((item) => item.event).slice(0, 2), ['cas.started', 'cas.provisioned']);

      const status = await runCas(['status', '--cas', cas.url, '--output', 'json'], ownerEnv);
      assert.equal(status.code, 0, status.stderr);
      const webhook = (JSON.parse(status.stdout) as CasStatus).owner?.webhook;
      assert.equal(webhook?.url, receiver.url);
      assert.ok((webhook?.delivered ?? 0) >= 2);
      assert.equal(webhook?.queueFull, false);
    } finally {
      await cas.stop();
    }
  });
});
