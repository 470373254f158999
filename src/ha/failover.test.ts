import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCasError } from '../errors/cas-error.js';
import { bootstrapCluster, createSessionOnAnyNode, minimalSession } from './harness/bootstrap.js';
import { LocalCluster } from './harness/local-cluster.js';

/**
 * Failover with real `cas serve` processes on loopback ports, sharing one data directory through the
 * local multi-node harness. Lease periods are 2 s; every wait is bounded; no assertion depends on timing.
 */

const LEASE_SECONDS = 2;
const WAIT_MS = 30_000;

describe('failover of cas serve', { timeout: 120_000 }, () => {
  const clusters: LocalCluster[] = [];
  after(async () => {
    await Promise.all(clusters.map((cluster) => cluster.destroy()));
  });

  async function newCluster(nodes: string[]): Promise<LocalCluster> {
    const cluster = await LocalCluster.create({ nodes, leaseDurationSeconds: LEASE_SECONDS, serveArguments: ['--no-snapshots'] });
    clusters.push(cluster);
    return cluster;
  }

  it('keeps every acknowledged write after kill -9', async () => {
    const cluster = await newCluster(['node-a', 'node-b']);
    const { primary, certificatePem } = await bootstrapCluster(cluster, 'node-a', ['node-b']);
    const standby = await cluster.start('node-b');
    const clients = cluster.nodes.map((node) => ({ node, client: cluster.ownerClient(node, certificatePem, 5_000) }));

    const acknowledged: Array<{ name: string; node: string }> = [];
    const deadline = Date.now() + 45_000;
    let killed = false;
    for (let i = 0; Date.now() < deadline; i++) {
      const name = `stream-${i}`;
      const node = await createSessionOnAnyNode(clients, name);
      if (node !== undefined) acknowledged.push({ name, node });
      const onA = acknowledged.filter((write) => write.node === 'node-a').length;
      if (!killed && onA >= 5) {
        primary.signal('SIGKILL');
        killed = true;
      }
      if (acknowledged.filter((write) => write.node === 'node-b').length >= 5) break;
      if (node === undefined) await sleep(50);
    }

    assert.ok(killed, 'the primary acknowledged five writes before the kill');
    assert.equal((await primary.exited).signal, 'SIGKILL');
    const onB = acknowledged.filter((write) => write.node === 'node-b');
    assert.ok(onB.length >= 5, `node-b acknowledged ${onB.length} writes after the kill`);
    assert.equal(standby.entries('acquired the primary lease')[0]?.['fencingToken'], 2);

    const reader = clients.find((entry) => entry.node === 'node-b')!.client;
    for (const write of acknowledged) {
      const view = await reader.readSession(write.name);
      assert.equal(view.name, write.name, `acknowledged write ${write.name} (by ${write.node}) is served by node-b`);
    }
  });

  it('rejects an unregistered platform by its id', async () => {
    const cluster = await newCluster(['node-a', 'node-c']);
    const { primary } = await bootstrapCluster(cluster, 'node-a', []);
    assert.equal((await primary.stop()).code, 0);

    const unregistered = await cluster.start('node-c');
    const platformId = unregistered.entries('CAS standby listening')[0]?.['platformId'];
    assert.match(String(platformId), /^[0-9a-f]{32}$/);
    const exit = await Promise.race([unregistered.exited, sleep(WAIT_MS).then(() => undefined)]);
    assert.ok(exit !== undefined, 'the unregistered node exits');
    assert.notEqual(exit.code, 0);
    assert.match(unregistered.stderr, new RegExp(`has no entry for this platform \\(id ${String(platformId)}\\)`));
    assert.match(unregistered.stderr, /cas backup register/);

    // It released the lease on the way out, so the registered node becomes primary again at once.
    const restarted = await cluster.start('node-a');
    await restarted.waitUntilPrimary(WAIT_MS);
  });

  it('restores the newest snapshot after losing the volume', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cas-ha-restore-'));
    const cluster = await LocalCluster.create({
      nodes: ['node-a', 'node-b'],
      leaseDurationSeconds: LEASE_SECONDS,
      root,
      // Snapshots and the audit log live on volumes of their own, as in the Kubernetes deployment.
      serveArguments: ['--snapshot-interval', '1', '--snapshot-dir', join(root, 'snapshots'), '--audit-log', join(root, 'audit', 'cas_audit.log')],
    });
    clusters.push(cluster);
    const { primary, certificatePem } = await bootstrapCluster(cluster, 'node-a', ['node-b']);
    await cluster.ownerClient('node-a', certificatePem).createSession(minimalSession('kept'));
    // The next snapshot may have started before the write committed. Then the database changed after
    // its copy, and the scheduler takes another one within the next interval of 1 s.
    await primary.waitForLog('snapshot created', WAIT_MS, primary.entries('snapshot created').length + 1);
    await sleep(2_500);

    primary.signal('SIGKILL');
    await primary.exited;
    rmSync(cluster.dataDir, { recursive: true, force: true });
    mkdirSync(cluster.dataDir, { mode: 0o700 });

    const replacement = await cluster.start('node-b');
    await replacement.waitUntilPrimary(WAIT_MS);
    const restored = replacement.entries('restored the newest valid snapshot automatically after the database was lost')[0];
    assert.ok(restored !== undefined, 'node-b logs the automatic restore');
    assert.equal(typeof restored['ageSeconds'], 'number');
    assert.equal(replacement.entries('CAS starts from a restored snapshot; changes made after the snapshot was taken are lost').length, 1);
    const view = await cluster.ownerClient('node-b', certificatePem).readSession('kept');
    assert.equal(view.name, 'kept');

    const status = (await cluster.ownerClient('node-b', certificatePem).status()) as { owner?: { restoredFrom?: { snapshot: string; ageSecondsAtRestore: number } } };
    assert.equal(status.owner?.restoredFrom?.snapshot, restored['snapshot']);
    assert.equal(typeof status.owner?.restoredFrom?.ageSecondsAtRestore, 'number');
  });

  it('never lets a resumed primary acknowledge a write', async () => {
    const cluster = await newCluster(['node-a', 'node-b']);
    const { primary, certificatePem } = await bootstrapCluster(cluster, 'node-a', ['node-b']);
    const standby = await cluster.start('node-b');
    const clientA = cluster.ownerClient('node-a', certificatePem, 15_000);
    const clientB = cluster.ownerClient('node-b', certificatePem, 5_000);
    await clientA.createSession(minimalSession('before-pause'));

    primary.signal('SIGSTOP');
    await standby.waitForLog('acquired the primary lease', WAIT_MS);
    // The paused process still holds SQLite's lock on cas.db, so the new lease holder cannot open it yet.
    await standby.waitForLog('holding the lease, but the previous primary still has the database locked; retrying until it closes the database', WAIT_MS);
    assert.equal(standby.entries('serving as primary').length, 0);

    // This request waits in the paused process's socket backlog and runs when it resumes.
    const inFlight = clientA.createSession(minimalSession('during-pause')).then(
      () => ({ acknowledged: true as const }),
      (error: unknown) => ({ acknowledged: false as const, error }),
    );
    await sleep(300);
    primary.signal('SIGCONT');

    const outcome = await inFlight;
    assert.equal(outcome.acknowledged, false, 'the resumed primary acknowledged a write after its lease expired');
    await primary.waitForLog('lost the primary lease; closing the database without writing and becoming a standby', WAIT_MS);
    await standby.waitUntilPrimary(WAIT_MS);

    // The old primary is a standby now: it rejects writes and names the new primary.
    const unpinnedA = cluster.unverifiedOwnerClient('node-a');
    for (let i = 0; i < 3; i++) {
      await assert.rejects(unpinnedA.createSession(minimalSession(`after-resume-${i}`)), (error: unknown) => {
        assert.ok(isCasError(error, 'NOT_PRIMARY'), `expected NOT_PRIMARY, got ${String(error)}`);
        assert.match(error.message, new RegExp(`at ${cluster.url('node-b').replace(/[.]/g, '\\.')}`));
        return true;
      });
    }

    await clientB.createSession(minimalSession('after-failover'));
    assert.equal((await clientB.readSession('before-pause')).name, 'before-pause');
    await assert.rejects(clientB.readSession('during-pause'), (error: unknown) => isCasError(error, 'SESSION_NOT_FOUND'));
    for (let i = 0; i < 3; i++) {
      await assert.rejects(clientB.readSession(`after-resume-${i}`), (error: unknown) => isCasError(error, 'SESSION_NOT_FOUND'));
    }
    assert.equal(primary.running, true, 'the old primary keeps running as a standby');
  });
});
