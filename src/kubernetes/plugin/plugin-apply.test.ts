import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ENV_VARS, FILE_NAMES } from '../../config/defaults.js';
import { objectNames } from '../manifests/names.js';
import { startPluginFixture, TEST_NAMESPACE as NAMESPACE, type PluginFixture } from '../testing/plugin-fixture.js';
import { runPlugin, scratchHome } from '../testing/plugin-process.js';

const DCAP_KEY = 'test-dcap-key-7f3a9c2e51b04d86a1';
const DCAP_KEY_BASE64 = Buffer.from(DCAP_KEY).toString('base64');

let fixture: PluginFixture;

before(async () => {
  fixture = await startPluginFixture();
});

after(async () => {
  await fixture.api.close();
});

describe('kubectl-provision cas apply path', () => {
  beforeEach(() => fixture.reset());

  it('apply creates every object with server-side apply', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);

    const patches = fixture.api.requests.filter((request) => request.method === 'PATCH');
    assert.equal(patches.length, 16);
    for (const patch of patches) {
      assert.equal(patch.contentType, 'application/apply-patch+yaml', patch.path);
      assert.equal(patch.query.get('fieldManager'), 'kubectl-provision', patch.path);
      assert.equal(patch.query.get('force'), 'true', patch.path);
    }
    const progressLines = run.stderr.split('\n').filter((line) => line.endsWith(' serverside-applied'));
    assert.equal(progressLines.length, patches.length);
    assert.ok(progressLines.includes('statefulset.apps/mycas serverside-applied'));
    assert.ok(progressLines.includes('daemonset.apps/mycas-backup serverside-applied'));

    assert.ok(fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas'));
    assert.ok(fixture.api.get('v1', 'PersistentVolumeClaim', NAMESPACE, 'cas-database-snapshots-mycas-0'));
    const token = fixture.api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret);
    assert.ok(token, 'the provisioning token Secret was not created');
    assert.ok(Buffer.from(token['data'][FILE_NAMES.provisioningToken], 'base64').length >= 32);
  });

  it('re-run reconciles without duplicates or deletions', async () => {
    const { env } = fixture.environment();
    const args = ['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'];
    assert.equal((await runPlugin(args, env)).code, 0);
    const first = new Map(fixture.api.all().map((object) => [`${object['kind']}/${object['metadata'].name}`, structuredClone(object)]));
    const tokenBefore = fixture.api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret)!['data'];

    fixture.api.requests.length = 0;
    const second = await runPlugin(args, env);
    assert.equal(second.code, 0, second.stderr);

    assert.deepEqual(fixture.api.requests.filter((request) => request.method === 'DELETE' || request.method === 'POST'), []);
    const again = fixture.api.all();
    assert.equal(again.length, first.size);
    for (const object of again) {
      const before = first.get(`${object['kind']}/${object['metadata'].name}`);
      assert.ok(before, `new object ${object['kind']}/${object['metadata'].name}`);
      assert.equal(object['metadata'].uid, before['metadata'].uid, `${object['kind']} was recreated`);
      assert.equal(object['metadata'].generation, before['metadata'].generation, `${object['kind']} spec changed`);
    }
    for (const claim of Object.values(objectNames('mycas').claims)) {
      assert.ok(fixture.api.get('v1', 'PersistentVolumeClaim', NAMESPACE, claim), `${claim} is gone`);
    }
    assert.deepEqual(fixture.api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret)!['data'], tokenBefore);
  });

  it('changed flag updates the object in place', async () => {
    const { env } = fixture.environment();
    const args = ['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'];
    assert.equal((await runPlugin(args, env)).code, 0);
    const before = structuredClone(fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!);
    assert.equal((await runPlugin([...args, '--snapshot-interval', '300'], env)).code, 0);
    const updated = fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!;
    assert.equal(updated['metadata'].uid, before['metadata'].uid);
    assert.equal(updated['metadata'].generation, before['metadata'].generation + 1);
    const serveArgs: string[] = updated['spec'].template.spec.containers[0].args;
    assert.equal(serveArgs[serveArgs.indexOf('--snapshot-interval') + 1], '300');
  });

  it('dry-run prints the objects apply sends', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    const sent = fixture.api.requests.filter((request) => request.method === 'PATCH').map((request) => request.body);

    fixture.api.requests.length = 0;
    const yamlRun = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--dry-run', '-o', 'yaml'], env);
    assert.equal(yamlRun.code, 0, yamlRun.stderr);
    const printed = parseAllDocuments(yamlRun.stdout).map((document) => document.toJS());
    assert.deepEqual(printed, sent);

    const jsonRun = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--dry-run', '-o', 'json'], env);
    assert.equal(jsonRun.code, 0, jsonRun.stderr);
    const list = JSON.parse(jsonRun.stdout) as { kind: string; items: unknown[] };
    assert.equal(list.kind, 'List');
    assert.deepEqual(list.items, sent);
    assert.deepEqual(fixture.api.requests, [], 'dry-run contacted the API server');
  });

  it('--failover-delay reaches the watchdog', async () => {
    const home = scratchHome();
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json', '--failover-delay', '2m'], { HOME: home.dir });
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as { items: Array<Record<string, any>> };
    const watchdog = list.items.find((item) => item['kind'] === 'Deployment' && item['metadata'].name === 'mycas-watchdog');
    assert.ok(watchdog, 'no watchdog Deployment in the dry-run output');
    const args = watchdog['spec'].template.spec.containers[0].args as string[];
    assert.equal(args[args.indexOf('--not-ready-delay') + 1], '120');
    const primary = list.items.find((item) => item['kind'] === 'StatefulSet')!['spec'].template.spec.containers[0].args as string[];
    assert.deepEqual(primary.slice(primary.indexOf('--lease'), primary.indexOf('--lease') + 4), ['--lease', 'kubernetes', '--lease-name', 'mycas-primary']);

    const help = await runPlugin(['cas', '--help'], { HOME: home.dir });
    assert.match(help.stdout.replace(/\s+/g, ' '), /--failover-delay <DURATION> .*\(default: "60s"\)/);
  });

  it('dry-run takes the namespace from the context', async () => {
    const home = scratchHome(fixture.api.kubeconfig('from-context'));
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json', '--dcap-api', DCAP_KEY], { HOME: home.dir, KUBECONFIG: home.kubeconfigPath });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(everyNamespaceIs(run.stdout, 'from-context'), run.stdout);
  });

  it('dry-run without any kubeconfig uses default', async () => {
    const home = scratchHome();
    const run = await runPlugin(['cas', 'mycas', '--dry-run', '-o', 'json'], { HOME: home.dir });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(everyNamespaceIs(run.stdout, 'default'), run.stdout);
  });

  it('DCAP key appears only in its Secret', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait', '--verbose', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);

    for (const output of [run.stdout, run.stderr]) {
      assert.equal(output.includes(DCAP_KEY), false);
      assert.equal(output.includes(DCAP_KEY_BASE64), false);
    }
    const keySecret = objectNames('mycas').dcapSecret;
    let secretsWithKey = 0;
    for (const request of fixture.api.requests) {
      const text = JSON.stringify(request.body ?? '') + request.path + request.query.toString();
      assert.equal(text.includes(DCAP_KEY), false, `${request.method} ${request.path} carries the key in plain text`);
      if (text.includes(DCAP_KEY_BASE64)) {
        assert.equal(request.path, `/api/v1/namespaces/${NAMESPACE}/secrets/${keySecret}`);
        secretsWithKey++;
      }
    }
    assert.equal(secretsWithKey, 1);
    for (const object of fixture.api.all()) {
      const isKeySecret = object['kind'] === 'Secret' && object['metadata'].name === keySecret;
      assert.equal(JSON.stringify(object).includes(DCAP_KEY_BASE64), isKeySecret, `${object['kind']}/${object['metadata'].name}`);
    }
    const container = fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!['spec'].template.spec.containers[0];
    const variable = container.env.find((entry: { name: string }) => entry.name === ENV_VARS.dcapApiKey);
    assert.deepEqual(variable.valueFrom, { secretKeyRef: { name: keySecret, key: 'api-key' } });
  });

  it('re-run without key keeps the stored key', async () => {
    const { env } = fixture.environment();
    assert.equal((await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env)).code, 0);
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--no-wait', '--verbose'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr.includes('warning: no --dcap-api key given'), false);
    assert.match(run.stderr, /no --dcap-api given: keeping the key stored in secret\/mycas-dcap-api-key/);
    const secret = fixture.api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').dcapSecret)!;
    assert.equal(secret['data']['api-key'], DCAP_KEY_BASE64);
    assert.equal(run.stderr.includes(DCAP_KEY), false);
  });

  it('--context picks a non-current context', async () => {
    const config = JSON.parse(fixture.api.kubeconfig('default')) as Record<string, any>;
    config['clusters'].push({ name: 'unreachable', cluster: { server: 'https://127.0.0.1:1' } });
    config['contexts'].push({ name: 'unreachable', context: { cluster: 'unreachable', user: 'test' } });
    config['current-context'] = 'unreachable';
    const home = scratchHome(JSON.stringify(config));
    const env = { HOME: home.dir, KUBECONFIG: home.kubeconfigPath };

    const current = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait'], env);
    assert.equal(current.code, 1);
    assert.match(current.stderr, /error: reading namespace "confidential" failed/);

    const chosen = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-wait', '--context', 'test'], env);
    assert.equal(chosen.code, 0, chosen.stderr);
    assert.ok(fixture.api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas'));
  });

  it('missing dcap key warns and names Azure', async () => {
    const { env } = fixture.environment();
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--no-wait'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /warning: no --dcap-api key given; using the default key, which may stop working/);
    assert.match(run.stderr, /Subscribe to Intel's Provisioning Certification Service \(DCAP\/PCS API\)/);
    assert.match(run.stderr, /On Azure, use --dcap-api 00000000000000000000000000000000/);
  });
});

/**
 * Whether every object of a `-o json` list is in `namespace`; the watchdog's ClusterRole and its binding
 * have none, so they must carry it in their name and subject instead.
 */
function everyNamespaceIs(stdout: string, namespace: string): boolean {
  const list = JSON.parse(stdout) as { items: Array<{ kind: string; metadata: { name: string; namespace?: string }; subjects?: Array<{ namespace: string }> }> };
  return list.items.every((item) =>
    item.kind.startsWith('Cluster')
      ? item.metadata.namespace === undefined && item.metadata.name.includes(`-${namespace}-`) && (item.subjects ?? []).every((subject) => subject.namespace === namespace)
      : item.metadata.namespace === namespace,
  );
}
