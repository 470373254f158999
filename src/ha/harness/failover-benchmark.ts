import { setTimeout as sleep } from 'node:timers/promises';
import { CasError } from '../../errors/cas-error.js';
import { bootstrapCluster, createSessionOnAnyNode } from './bootstrap.js';
import { LocalCluster } from './local-cluster.js';

export interface FailoverMeasurement {
  /** Milliseconds from SIGKILL of the primary to the first write acknowledged by the new primary. */
  killToFirstWriteMs: number;
  leaseDurationSeconds: number;
  /** Write attempts that were not acknowledged between the kill and the first acknowledged write. */
  failedAttempts: number;
}

export interface FailoverBenchmarkOptions {
  /** Lease period of the cluster in seconds; the failover time is bounded below by it. Default 3. */
  leaseDurationSeconds?: number;
  /** Gives up after this many milliseconds without an acknowledged write. Default 60 000. */
  timeoutMs?: number;
  /** Pause between two write attempts in milliseconds. Default 50. */
  retryIntervalMs?: number;
}

/**
 * Measures one failover on a local two-node cluster: bootstraps node-a as primary with node-b registered
 * and running as standby, writes one session, kills node-a with SIGKILL and writes sessions to both nodes
 * until one is acknowledged. The time covers lease expiry (node-b sees node-a as another machine), taking
 * the lease, opening the database and the first write. Starts and removes its own temporary cluster.
 */
export async function measureFailover(options: FailoverBenchmarkOptions = {}): Promise<FailoverMeasurement> {
  const leaseDurationSeconds = options.leaseDurationSeconds ?? 3;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const cluster = await LocalCluster.create({ nodes: ['node-a', 'node-b'], leaseDurationSeconds, serveArguments: ['--no-snapshots'] });
  try {
    const { primary, certificatePem } = await bootstrapCluster(cluster, 'node-a', ['node-b']);
    await cluster.start('node-b');
    const clients = cluster.nodes.map((node) => ({ node, client: cluster.ownerClient(node, certificatePem, 5_000) }));
    if ((await createSessionOnAnyNode(clients, 'benchmark-before-kill')) !== 'node-a') {
      throw new CasError('INTERNAL', 'the first primary did not acknowledge the write before the kill');
    }

    primary.signal('SIGKILL');
    const killedAt = performance.now();
    let failedAttempts = 0;
    for (let attempt = 0; performance.now() - killedAt < timeoutMs; attempt++) {
      const node = await createSessionOnAnyNode(clients, `benchmark-after-kill-${attempt}`);
      if (node !== undefined) {
        return { killToFirstWriteMs: performance.now() - killedAt, leaseDurationSeconds, failedAttempts };
      }
      failedAttempts += 1;
      await sleep(options.retryIntervalMs ?? 50);
    }
    throw new CasError('TIMEOUT', `no node acknowledged a write within ${timeoutMs} ms after the primary was killed`);
  } finally {
    await cluster.destroy();
  }
}
