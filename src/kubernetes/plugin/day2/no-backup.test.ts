import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPluginFixture, TEST_NAMESPACE, type PluginFixture } from '../../testing/plugin-fixture.js';
import { runPlugin } from '../../testing/plugin-process.js';

/** `kubectl provision cas --no-backup`: the deployment leaves out the backup DaemonSet and warns about the cost. */

let fixture: PluginFixture;

before(async () => {
  fixture = await startPluginFixture();
});

after(async () => {
  await fixture.api.close();
});

describe('kubectl provision cas --no-backup', () => {
  it('renders no backup objects', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '--no-backup', '--dry-run', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const kinds = (JSON.parse(run.stdout) as { items: Array<{ kind: string; metadata: { name: string } }> }).items.map((item) => `${item.kind}/${item.metadata.name}`);
    assert.ok(kinds.includes('StatefulSet/mycas'), kinds.join(', '));
    assert.equal(kinds.includes('DaemonSet/mycas-backup'), false);
    assert.equal(kinds.includes('NetworkPolicy/mycas-backup'), false);
    assert.match(run.stderr, /warning: --no-backup: no node is registered as a backup target/);
    assert.match(run.stderr, /every session and secret in this CAS is lost/);
  });

  it('renders the backup DaemonSet by default', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const kinds = (JSON.parse(run.stdout) as { items: Array<{ kind: string; metadata: { name: string } }> }).items.map((item) => `${item.kind}/${item.metadata.name}`);
    assert.ok(kinds.includes('DaemonSet/mycas-backup'));
    assert.doesNotMatch(run.stderr, /--no-backup/);
  });

  it('applies no DaemonSet to the cluster', async () => {
    fixture.reset();
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', TEST_NAMESPACE, '--no-backup', '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /statefulset\.apps\/mycas serverside-applied/);
    assert.equal(fixture.api.list('apps/v1', 'DaemonSet', TEST_NAMESPACE).length, 0);
    assert.ok(fixture.api.get('apps/v1', 'StatefulSet', TEST_NAMESPACE, 'mycas'));
  });
});

describe('kubectl provision cas --webhook', () => {
  it('passes the URL to cas serve', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '--webhook', 'https://siem.example.test/cas-audit', '--dry-run', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const items = (JSON.parse(run.stdout) as { items: Array<{ kind: string; spec: { template: { spec: { containers: Array<{ args: string[] }> } } } }> }).items;
    const args = items.find((item) => item.kind === 'StatefulSet')!.spec.template.spec.containers[0]!.args;
    const index = args.indexOf('--audit-webhook');
    assert.notEqual(index, -1, args.join(' '));
    assert.equal(args[index + 1], 'https://siem.example.test/cas-audit');
  });

  it('rejects a URL with credentials', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '--webhook', 'https://user:pw@siem.example.test/', '--dry-run'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /remove the user name and password/);
  });
});
