import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ENV_VARS, FILE_NAMES } from '../../config/defaults.js';
import { objectNames } from '../manifests/names.js';
import { runPlugin, scratchHome } from '../testing/plugin-process.js';
import { TestApiServer } from '../testing/test-api-server.js';

const DCAP_KEY = 'test-dcap-key-7f3a9c2e51b04d86a1';
const DCAP_KEY_BASE64 = Buffer.from(DCAP_KEY).toString('base64');
const NAMESPACE = 'confidential';

let api: TestApiServer;

before(async () => {
  api = await TestApiServer.start();
});

after(async () => {
  await api.close();
});

/** Resets the cluster to the namespaces and, unless `pullSecret` is false, the image pull Secret. */
function resetCluster(options: { pullSecret?: boolean } = {}): void {
  api.reset();
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  if (options.pullSecret !== false) {
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cas-image-pull', namespace: NAMESPACE }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': 'e30=' } });
  }
}

function environment(): { env: Record<string, string>; home: ReturnType<typeof scratchHome> } {
  const home = scratchHome(api.kubeconfig('default'));
  return { home, env: { HOME: home.dir, KUBECONFIG: home.kubeconfigPath, CAS_HOME: home.casHome } };
}

function writes(): typeof api.requests {
  return api.requests.filter((request) => request.method !== 'GET');
}

describe('kubectl-provision cas against the test API server', () => {
  beforeEach(() => resetCluster());

  it('missing namespace creates nothing', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', 'nope', '--dcap-api', DCAP_KEY], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /namespace "nope" not found/);
    assert.deepEqual(writes(), []);
  });

  it('missing pull secret says how to create it', async () => {
    resetCluster({ pullSecret: false });
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /image pull Secret "cas-image-pull" not found/);
    assert.match(run.stderr, /kubectl create secret docker-registry cas-image-pull -n confidential --docker-server=ghcr\.io/);
    assert.deepEqual(writes(), []);
  });

  it('apply creates every object with server-side apply', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);

    const patches = api.requests.filter((request) => request.method === 'PATCH');
    assert.equal(patches.length, 10);
    for (const patch of patches) {
      assert.equal(patch.contentType, 'application/apply-patch+yaml', patch.path);
      assert.equal(patch.query.get('fieldManager'), 'kubectl-provision', patch.path);
      assert.equal(patch.query.get('force'), 'true', patch.path);
    }
    const progressLines = run.stderr.split('\n').filter((line) => line.endsWith(' serverside-applied'));
    assert.equal(progressLines.length, patches.length);
    assert.ok(progressLines.includes('statefulset.apps/mycas serverside-applied'));
    assert.ok(progressLines.includes('daemonset.apps/mycas-backup serverside-applied'));

    assert.ok(api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas'));
    assert.ok(api.get('v1', 'PersistentVolumeClaim', NAMESPACE, 'cas-database-snapshots-mycas-0'));
    const token = api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret);
    assert.ok(token, 'the provisioning token Secret was not created');
    assert.ok(Buffer.from(token['data'][FILE_NAMES.provisioningToken], 'base64').length >= 32);
  });

  it('re-run reconciles without duplicates or deletions', async () => {
    const { env } = environment();
    const args = ['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'];
    assert.equal((await runPlugin(args, env)).code, 0);
    const first = new Map(api.all().map((object) => [`${object['kind']}/${object['metadata'].name}`, structuredClone(object)]));
    const tokenBefore = api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret)!['data'];

    api.requests.length = 0;
    const second = await runPlugin(args, env);
    assert.equal(second.code, 0, second.stderr);

    assert.deepEqual(api.requests.filter((request) => request.method === 'DELETE' || request.method === 'POST'), []);
    const again = api.all();
    assert.equal(again.length, first.size);
    for (const object of again) {
      const before = first.get(`${object['kind']}/${object['metadata'].name}`);
      assert.ok(before, `new object ${object['kind']}/${object['metadata'].name}`);
      assert.equal(object['metadata'].uid, before['metadata'].uid, `${object['kind']} was recreated`);
      assert.equal(object['metadata'].generation, before['metadata'].generation, `${object['kind']} spec changed`);
    }
    for (const claim of Object.values(objectNames('mycas').claims)) {
      assert.ok(api.get('v1', 'PersistentVolumeClaim', NAMESPACE, claim), `${claim} is gone`);
    }
    assert.deepEqual(api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret)!['data'], tokenBefore);
  });

  it('changed flag updates the object in place', async () => {
    const { env } = environment();
    const args = ['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'];
    assert.equal((await runPlugin(args, env)).code, 0);
    const before = structuredClone(api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!);
    assert.equal((await runPlugin([...args, '--snapshot-interval', '300'], env)).code, 0);
    const updated = api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!;
    assert.equal(updated['metadata'].uid, before['metadata'].uid);
    assert.equal(updated['metadata'].generation, before['metadata'].generation + 1);
    const serveArgs: string[] = updated['spec'].template.spec.containers[0].args;
    assert.equal(serveArgs[serveArgs.indexOf('--snapshot-interval') + 1], '300');
  });

  it('dry-run prints the objects apply sends', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    const sent = api.requests.filter((request) => request.method === 'PATCH').map((request) => request.body);

    api.requests.length = 0;
    const yamlRun = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--dry-run', '-o', 'yaml'], env);
    assert.equal(yamlRun.code, 0, yamlRun.stderr);
    const printed = parseAllDocuments(yamlRun.stdout).map((document) => document.toJS());
    assert.deepEqual(printed, sent);

    const jsonRun = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--dry-run', '-o', 'json'], env);
    assert.equal(jsonRun.code, 0, jsonRun.stderr);
    const list = JSON.parse(jsonRun.stdout) as { kind: string; items: unknown[] };
    assert.equal(list.kind, 'List');
    assert.deepEqual(list.items, sent);
    assert.deepEqual(api.requests, [], 'dry-run contacted the API server');
  });

  it('dry-run takes the namespace from the context', async () => {
    const home = scratchHome(api.kubeconfig('from-context'));
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json', '--dcap-api', DCAP_KEY], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as { items: Array<{ metadata: { namespace: string } }> };
    assert.ok(list.items.every((item) => item.metadata.namespace === 'from-context'));
  });

  it('dry-run without any kubeconfig uses default', async () => {
    const home = scratchHome();
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json'], { HOME: home.dir });
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as { items: Array<{ metadata: { namespace: string } }> };
    assert.ok(list.items.every((item) => item.metadata.namespace === 'default'));
  });

  it('DCAP key appears only in its Secret', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait', '--verbose', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);

    for (const output of [run.stdout, run.stderr]) {
      assert.equal(output.includes(DCAP_KEY), false);
      assert.equal(output.includes(DCAP_KEY_BASE64), false);
    }
    const keySecret = objectNames('mycas').dcapSecret;
    let secretsWithKey = 0;
    for (const request of api.requests) {
      const text = JSON.stringify(request.body ?? '') + request.path + request.query.toString();
      assert.equal(text.includes(DCAP_KEY), false, `${request.method} ${request.path} carries the key in plain text`);
      if (text.includes(DCAP_KEY_BASE64)) {
        assert.equal(request.path, `/api/v1/namespaces/${NAMESPACE}/secrets/${keySecret}`);
        secretsWithKey++;
      }
    }
    assert.equal(secretsWithKey, 1);
    for (const object of api.all()) {
      const isKeySecret = object['kind'] === 'Secret' && object['metadata'].name === keySecret;
      assert.equal(JSON.stringify(object).includes(DCAP_KEY_BASE64), isKeySecret, `${object['kind']}/${object['metadata'].name}`);
    }
    const container = api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!['spec'].template.spec.containers[0];
    const variable = container.env.find((entry: { name: string }) => entry.name === ENV_VARS.dcapApiKey);
    assert.deepEqual(variable.valueFrom, { secretKeyRef: { name: keySecret, key: 'api-key' } });
  });

  it('missing dcap key warns and names Azure', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /warning: no --dcap-api key given; using the default key, which may stop working/);
    assert.match(run.stderr, /Subscribe to Intel's Provisioning Certification Service \(DCAP\/PCS API\)/);
    assert.match(run.stderr, /On Azure, use --dcap-api 00000000000000000000000000000000/);
  });

  it('namespace comes from the context', async () => {
    const home = scratchHome(api.kubeconfig(NAMESPACE));
    const run = await runPlugin(['cas', 'ctxcas', '--dcap-api', DCAP_KEY, '--no-wait'], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(api.get('apps/v1', 'StatefulSet', NAMESPACE, 'ctxcas'));
  });

  it('--kubeconfig wins over KUBECONFIG', async () => {
    const good = scratchHome(api.kubeconfig('default'));
    const broken = scratchHome(JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [], users: [], contexts: [] }));
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--kubeconfig', good.kubeconfigPath, '--dcap-api', DCAP_KEY, '--no-wait'], {
      HOME: good.dir,
      KUBECONFIG: broken.kubeconfigPath,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas'));
  });

  it('rejected credentials name the API error', async () => {
    const home = scratchHome(api.kubeconfig('default').replace(api.token, 'wrong-token'));
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /error: reading namespace "confidential" failed: HTTP 401: Unauthorized: the API server rejected the credentials/);
    assert.deepEqual(writes(), []);
  });

  it('forbidden apply stops with the reason', async () => {
    api.forbiddenWrites.add('statefulsets');
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /error: applying statefulset\.apps\/mycas failed: HTTP 403: statefulsets\.apps "mycas" is forbidden: User "test" cannot patch/);
    assert.equal(api.get('apps/v1', 'DaemonSet', NAMESPACE, 'mycas-backup'), undefined, 'objects after the failed one were applied');
  });

  it('unknown --context fails before any request', async () => {
    const { env } = environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--context', 'elsewhere'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /context "elsewhere" does not exist/);
    assert.deepEqual(api.requests, []);
  });

  it('invalid flags exit with usage errors', async () => {
    const { env } = environment();
    const cases: Array<[string[], RegExp]> = [
      [['cas', 'MyCas', '--dry-run'], /invalid CAS name "MyCas"/],
      [['cas', 'mycas', '--timeout', 'soon'], /invalid duration "soon"/],
      [['cas', 'mycas', '--snapshot-interval', '0', '--dry-run'], /invalid --snapshot-interval 0/],
      [['cas', 'mycas', '--node-selector', 'novalue', '--dry-run'], /invalid --node-selector entry "novalue"/],
      [['cas', 'mycas', '-o', 'xml', '--dry-run'], /argument 'xml' is invalid/],
      [['cas', 'mycas', '--service-type', 'ExternalName', '--dry-run'], /argument 'ExternalName' is invalid/],
    ];
    for (const [args, message] of cases) {
      const run = await runPlugin(args, env);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
    assert.deepEqual(api.requests, []);
  });

  it('timeout reports the pod events and logs', async () => {
    const { env } = environment();
    api.onObjectWritten = (object) => {
      if (object['kind'] !== 'StatefulSet') return;
      api.setPodLog(NAMESPACE, 'mycas-0', 'cas', 'starting cas serve\nerror: KEY_STORE_NO_ENTRY platform not registered\n');
      api.addEvent(NAMESPACE, { kind: 'Pod', name: 'mycas-0' }, 'Warning', 'BackOff', 'Back-off restarting failed container cas');
    };
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--timeout', '2s'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /Waiting for statefulset "mycas": 0 of 1 pods ready/);
    assert.match(run.stderr, /Warning BackOff Pod\/mycas-0: Back-off restarting failed container cas/);
    assert.match(run.stderr, /error: KEY_STORE_NO_ENTRY platform not registered/);
    assert.match(run.stderr, /timed out after 2s waiting for statefulset "mycas"/);
    assert.ok(api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret), 'the token Secret must survive a failed wait');
  });
});
