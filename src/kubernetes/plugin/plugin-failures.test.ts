import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { objectNames } from '../manifests/names.js';
import { startPluginFixture, TEST_NAMESPACE as NAMESPACE, type PluginFixture } from '../testing/plugin-fixture.js';
import { runPlugin, scratchHome } from '../testing/plugin-process.js';

const DCAP_KEY = 'test-dcap-key-7f3a9c2e51b04d86a1';

let fixture: PluginFixture;

before(async () => {
  fixture = await startPluginFixture();
});

after(async () => {
  await fixture.api.close();
});

describe('kubectl-provision cas failures', () => {
  beforeEach(() => fixture.reset());

  it('missing namespace creates nothing', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', 'nope', '--dcap-api', DCAP_KEY], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /namespace "nope" not found/);
    assert.deepEqual(fixture.writes(), []);
  });

  it('missing pull secret says how to create it', async () => {
    fixture.reset({ pullSecret: false });
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /image pull Secret "cas-image-pull" not found/);
    assert.match(run.stderr, /kubectl create secret docker-registry cas-image-pull -n confidential --docker-server=ghcr\.io/);
    assert.deepEqual(fixture.writes(), []);
  });

  it('namespace comes from the context', async () => {
    const home = scratchHome(fixture.api.kubeconfig(NAMESPACE));
    const run = await runPlugin(['cas', 'ctxcas', '--dcap-api', DCAP_KEY, '--no-wait'], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'ctxcas'));
  });

  it('--kubeconfig wins over KUBECONFIG', async () => {
    const good = scratchHome(fixture.api.kubeconfig('default'));
    const broken = scratchHome(JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--kubeconfig', good.kubeconfigPath, '--dcap-api', DCAP_KEY, '--no-wait'], {
      HOME: good.dir,
      KUBECONFIG: broken.kubeconfigPath,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas'));
  });

  it('rejected credentials name the API error', async () => {
    const home = scratchHome(fixture.api.kubeconfig('default').replace(fixture.api.token, 'wrong-token'));
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /error: reading namespace "confidential" failed: HTTP 401: Unauthorized: the API server rejected the credentials/);
    assert.deepEqual(fixture.writes(), []);
  });

  it('forbidden apply stops with the reason', async () => {
    fixture.api.forbiddenWrites.add('statefulsets');
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /error: applying statefulset\.apps\/mycas failed: HTTP 403: statefulsets\.apps "mycas" is forbidden: User "test" cannot patch/);
    assert.equal(fixture.api.get('apps/v1', 'DaemonSet', NAMESPACE, 'mycas-backup'), undefined, 'objects after the failed one were applied');
  });

  it('unknown --context fails before any request', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--context', 'elsewhere'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /context "elsewhere" does not exist/);
    assert.deepEqual(fixture.api.requests, []);
  });

  it('invalid flags exit with usage errors', async () => {
    const { env } = fixture.environment();
    const cases: Array<[string[], RegExp]> = [
      [['cas', 'MyCas', '--dry-run'], /invalid CAS name "MyCas"/],
      [['cas', 'mycas', '--timeout', 'soon'], /invalid duration "soon"/],
      [['cas', 'mycas', '--snapshot-interval', '0', '--dry-run'], /invalid --snapshot-interval 0/],
      [['cas', 'mycas', '--node-selector', 'novalue', '--dry-run'], /invalid --node-selector entry "novalue"/],
      [['cas', 'mycas', '-o', 'xml', '--dry-run'], /argument 'xml' is invalid/],
      [['cas', 'mycas', '--service-type', 'ExternalName', '--dry-run'], /argument 'ExternalName' is invalid/],
      [['cas', 'mycas', '--failover-delay', '1500ms', '--dry-run'], /invalid --failover-delay "1500ms": expected whole seconds/],
      [['cas', 'mycas', '--failover-delay', '25h', '--dry-run'], /invalid --failover-delay of 90000 s/],
    ];
    for (const [args, message] of cases) {
      const run = await runPlugin(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
    assert.deepEqual(fixture.api.requests, []);
  });

  it('timeout reports the pod events and logs', async () => {
    const { env } = fixture.environment();
    fixture.api.onObjectWritten = (object) => {
      if (object['kind'] !== 'StatefulSet') return;
      fixture.api.setPodLog(NAMESPACE, 'mycas-0', 'cas', 'starting cas serve\nerror: KEY_STORE_NO_ENTRY platform not registered\n');
      fixture.api.addEvent(NAMESPACE, { kind: 'Pod', name: 'mycas-0' }, 'Warning', 'BackOff', 'Back-off restarting failed container cas');
    };
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--timeout', '2s'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /Waiting for statefulset "mycas": 0 of 1 pods ready/);
    assert.match(run.stderr, /Warning BackOff Pod\/mycas-0: Back-off restarting failed container cas/);
    assert.match(run.stderr, /error: KEY_STORE_NO_ENTRY platform not registered/);
    assert.match(run.stderr, /timed out after 2s waiting for statefulset "mycas"/);
    assert.ok(fixture.api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret), 'the token Secret must survive a failed wait');
  });
});
