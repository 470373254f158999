import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { isCasError } from '../../errors/cas-error.js';
import { LeaseElector, leaseTiming } from '../../ha/lease.js';
import { KubernetesLeaseStore } from '../../ha/kubernetes-lease.js';
import { silentLogger } from '../../logging/logger.js';
import { TestApiServer } from '../testing/test-api-server.js';
import { decideFailover } from './decide.js';
import { FailoverWatchdog } from './watchdog.js';

const NAMESPACE = 'cas-system';

/**
 * The watchdog loop and the Kubernetes lease against the loopback test API server: real HTTPS requests
 * through @kubernetes/client-node, with a clock the test moves.
 */
describe('FailoverWatchdog', () => {
  let api: TestApiServer;
  let config: KubeConfig;
  let monotonic = 0;
  let wallClock = new Date('2026-12-04T12:00:00Z');

  before(async () => {
    api = await TestApiServer.start();
    config = new KubeConfig();
    config.loadFromString(api.kubeconfig(NAMESPACE));
  });
  after(async () => {
    await api.close();
  });
  beforeEach(() => {
    api.reset();
    monotonic = 0;
    wallClock = new Date('2026-12-04T12:00:00Z');
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  });

  function watchdog(): FailoverWatchdog {
    return new FailoverWatchdog({
      config,
      namespace: NAMESPACE,
      podName: 'cas-0',
      leaseName: 'cas-primary',
      notReadyDelaySeconds: 30,
      intervalSeconds: 1,
      logger: silentLogger(),
      monotonicNow: () => monotonic,
      now: () => wallClock,
    });
  }

  function putNode(name: string, ready: 'True' | 'Unknown', since: Date): void {
    api.put({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready, lastTransitionTime: since.toISOString() }] } });
  }

  function putPod(nodeName: string): string {
    return api.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cas-0', namespace: NAMESPACE }, spec: { nodeName } })['metadata'].uid as string;
  }

  function putLease(holder: string): void {
    api.put({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'cas-primary', namespace: NAMESPACE },
      spec: { holderIdentity: holder, leaseDurationSeconds: 15, renewTime: wallClock.toISOString() },
    });
  }

  it('leaves a pod on a Ready node alone', async () => {
    putNode('node-a', 'True', new Date('2026-12-01T00:00:00Z'));
    putPod('node-a');
    putLease('cas-0');
    const decision = await watchdog().tick();
    assert.equal(decision.action, 'wait');
    assert.ok(api.get('v1', 'Pod', NAMESPACE, 'cas-0') !== undefined);
  });

  it('deletes the stuck pod after delay and lease expiry', async () => {
    putNode('node-a', 'Unknown', wallClock);
    const uid = putPod('node-a');
    putLease('cas-0');
    const dog = watchdog();

    assert.equal((await dog.tick()).action, 'wait', 'node just became NotReady');
    wallClock = new Date(wallClock.getTime() + 30_000);
    monotonic += 10_000;
    const second = await dog.tick();
    assert.equal(second.action, 'wait', 'delay reached, but the lease was seen unchanged for 10 s only');
    assert.match(second.reason, /renewed 10 s ago/);

    monotonic += 5_000;
    const third = await dog.tick();
    assert.equal(third.action, 'delete-pod', third.reason);
    assert.equal(api.get('v1', 'Pod', NAMESPACE, 'cas-0'), undefined);
    const deletion = api.requests.find((request) => request.method === 'DELETE');
    assert.equal(deletion?.path, `/api/v1/namespaces/${NAMESPACE}/pods/cas-0`);
    assert.equal(deletion?.query.get('gracePeriodSeconds'), '0');
    assert.deepEqual((deletion?.body as { preconditions?: unknown }).preconditions, { uid });
  });

  it('waits while the lease keeps being renewed', async () => {
    putNode('node-a', 'Unknown', new Date(wallClock.getTime() - 60_000));
    putPod('node-a');
    putLease('cas-0');
    const dog = watchdog();
    await dog.tick();
    for (let i = 0; i < 3; i++) {
      monotonic += 10_000;
      putLease('cas-0');
      assert.equal((await dog.tick()).action, 'wait');
    }
    assert.ok(api.get('v1', 'Pod', NAMESPACE, 'cas-0') !== undefined);
  });

  it('never deletes a recreated pod', async () => {
    putNode('node-a', 'Unknown', new Date(wallClock.getTime() - 60_000));
    putPod('node-a');
    const dog = watchdog();
    const decision = decideFailover(await dog.observe(), { notReadyDelaySeconds: 30 });
    assert.equal(decision.action, 'delete-pod');
    // The StatefulSet recreates the pod under the same name before the stale decision is carried out.
    api.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cas-0', namespace: NAMESPACE }, spec: { nodeName: 'node-b' } });
    await dog.act(decision);
    assert.equal(api.get('v1', 'Pod', NAMESPACE, 'cas-0')?.['spec'].nodeName, 'node-b', 'the recreated pod survives');
  });
});

describe('KubernetesLeaseStore', () => {
  let api: TestApiServer;
  let config: KubeConfig;

  before(async () => {
    api = await TestApiServer.start();
    config = new KubeConfig();
    config.loadFromString(api.kubeconfig(NAMESPACE));
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  });
  after(async () => {
    await api.close();
  });

  it('elects one holder and hands over after expiry', async () => {
    let clock = 0;
    const store = new KubernetesLeaseStore(config, NAMESPACE, 'cas-primary');
    const timing = leaseTiming(2_000);
    const a = new LeaseElector({ store, self: { id: 'cas-0', url: 'https://cas-0' }, timing, now: () => clock });
    const b = new LeaseElector({ store, self: { id: 'cas-1' }, timing, now: () => clock });

    assert.equal(await a.tryAcquire(), true);
    const lease = api.get('coordination.k8s.io/v1', 'Lease', NAMESPACE, 'cas-primary');
    assert.equal(lease?.['spec'].holderIdentity, 'cas-0');
    assert.equal(lease?.['spec'].leaseDurationSeconds, 2);
    assert.equal(await b.tryAcquire(), false);
    clock += 1_000;
    assert.equal(await a.renew(), true);
    assert.equal(await b.tryAcquire(), false);
    clock += 2_000;
    assert.equal(await b.tryAcquire(), true);
    assert.equal(b.token, 2);
    assert.equal(await a.renew(), false);
    assert.throws(() => a.assertValid(), (error: unknown) => isCasError(error, 'NOT_PRIMARY') && error.message.includes('cas-1'));
  });

  it('lets one of two racing writers win', async () => {
    const store = new KubernetesLeaseStore(config, NAMESPACE, 'race');
    const first = await store.compareAndSwap(undefined, { holder: { id: 'x' }, token: 1, durationMs: 1000, renewedAt: new Date().toISOString() });
    assert.ok(first !== undefined);
    const results = await Promise.all(
      ['p', 'q', 'r'].map((id) => store.compareAndSwap(first, { holder: { id }, token: 2, durationMs: 1000, renewedAt: new Date().toISOString() })),
    );
    assert.equal(results.filter((result) => result !== undefined).length, 1);
    assert.equal(await store.compareAndSwap(undefined, { holder: { id: 'y' }, token: 1, durationMs: 1000, renewedAt: new Date().toISOString() }), undefined);
  });
});
