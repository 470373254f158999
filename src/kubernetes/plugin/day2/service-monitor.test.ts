import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPluginFixture, TEST_NAMESPACE, type PluginFixture } from '../../testing/plugin-fixture.js';
import { runPlugin } from '../../testing/plugin-process.js';

/** The ServiceMonitor is applied exactly when the cluster's discovery announces monitoring.coreos.com/v1. */

let fixture: PluginFixture;

before(async () => {
  fixture = await startPluginFixture();
});

after(async () => {
  await fixture.api.close();
});

describe('ServiceMonitor for the metrics port', () => {
  it('is left out without the Prometheus Operator', async () => {
    fixture.reset();
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', TEST_NAMESPACE, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /servicemonitor/);
    assert.equal(fixture.writes().some((request) => request.path.includes('servicemonitors')), false);
  });

  it('is applied when the cluster serves monitoring.coreos.com/v1', async () => {
    fixture.reset();
    fixture.api.unservedGroups.delete('monitoring.coreos.com');
    try {
      const { env } = fixture.environment();
      const run = await runPlugin(['cas', 'mycas', '-n', TEST_NAMESPACE, '--no-wait'], env);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /servicemonitor\.monitoring\.coreos\.com\/mycas serverside-applied/);

      const monitor = fixture.api.get('monitoring.coreos.com/v1', 'ServiceMonitor', TEST_NAMESPACE, 'mycas');
      assert.ok(monitor, 'no ServiceMonitor stored');
      const service = fixture.api.get('v1', 'Service', TEST_NAMESPACE, 'mycas')!;
      const endpoint = monitor['spec'].endpoints[0] as { port: string; path: string; scheme: string };
      const metricsPort = (service['spec'].ports as Array<{ name: string; port: number }>).find((port) => port.name === endpoint.port);
      assert.ok(metricsPort, `the Service has no port named ${endpoint.port}`);
      assert.equal(metricsPort.port, 9091);
      assert.equal(endpoint.path, '/metrics');
      assert.equal(endpoint.scheme, 'http');
      for (const [key, value] of Object.entries(monitor['spec'].selector.matchLabels as Record<string, string>)) {
        assert.equal(service['metadata'].labels[key], value, `the selector label ${key} does not match the Service`);
      }
    } finally {
      fixture.api.unservedGroups.add('monitoring.coreos.com');
    }
  });
});
