import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCas } from '../../server/testing/cas-process.js';
import { StrictSchemaValidator } from '../testing/strict-schema.js';
import { withKubernetesFailover, primaryLeaseName } from './high-availability.js';
import { buildCoreManifests, buildManifests } from './index.js';
import { CONTAINER_NAMES } from './names.js';
import { DEFAULT_FAILOVER_DELAY_SECONDS, validateOptions, type CasDeploymentOptions } from './options.js';
import { testDeploymentOptions, type Json } from './test-support.js';
import { DEFAULT_NOT_READY_DELAY_SECONDS } from '../../cli/commands/watchdog.js';

const options: CasDeploymentOptions = testDeploymentOptions();

const base = buildCoreManifests(options, 'dcap-key-0123456789');
const objects = withKubernetesFailover(base, options, 90) as unknown as Json[];

function find(kind: string, name?: string): Json {
  const found = objects.find((object) => object['kind'] === kind && (name === undefined || object['metadata'].name === name));
  assert.ok(found, `no ${kind} ${name ?? ''}`);
  return found;
}

function serverContainer(): Json {
  return find('StatefulSet', 'mycas')['spec'].template.spec.containers.find((container: Json) => container['name'] === CONTAINER_NAMES.server);
}

describe('withKubernetesFailover', () => {
  it('validates strictly', async () => {
    const kinds = new Map(objects.map((object) => [`${object['apiVersion']}/${object['kind']}`, { apiVersion: object['apiVersion'], kind: object['kind'] }]));
    const validator = StrictSchemaValidator.create([...kinds.values()]);
    for (const object of objects) {
      assert.deepEqual(await validator.validate(object), [], `${object['kind']} ${object['metadata'].name}`);
    }
  });

  it('leaves its input unchanged', () => {
    assert.deepEqual(base, buildCoreManifests(options, 'dcap-key-0123456789'));
  });

  it('is applied by buildManifests', () => {
    assert.equal(DEFAULT_FAILOVER_DELAY_SECONDS, DEFAULT_NOT_READY_DELAY_SECONDS);
    assert.deepEqual(buildManifests(options, 'dcap-key-0123456789'), withKubernetesFailover(base, options, DEFAULT_FAILOVER_DELAY_SECONDS));
    assert.deepEqual(buildManifests({ ...options, failoverDelaySeconds: 90 }, 'dcap-key-0123456789'), objects);
  });

  it('rejects an invalid failover delay', () => {
    for (const failoverDelaySeconds of [0, 1.5, 86_401]) {
      assert.throws(() => validateOptions({ ...options, failoverDelaySeconds }), /invalid --failover-delay/);
    }
    validateOptions({ ...options, failoverDelaySeconds: 1 });
  });

  it('runs cas serve with the Kubernetes lease', () => {
    const args = serverContainer()['args'] as string[];
    assert.deepEqual(args.slice(-4), ['--lease', 'kubernetes', '--lease-name', 'mycas-primary']);
    const env = serverContainer()['env'] as Json[];
    assert.deepEqual(env.find((entry) => entry['name'] === 'POD_NAME')?.['valueFrom'], { fieldRef: { fieldPath: 'metadata.name' } });
    assert.deepEqual(env.find((entry) => entry['name'] === 'POD_NAMESPACE')?.['valueFrom'], { fieldRef: { fieldPath: 'metadata.namespace' } });
    assert.deepEqual(env.find((entry) => entry['name'] === 'POD_UID')?.['valueFrom'], { fieldRef: { fieldPath: 'metadata.uid' } });
    assert.equal(find('StatefulSet', 'mycas')['spec'].template.spec.automountServiceAccountToken, true);
  });

  it('uses only flags that cas serve accepts', async () => {
    const help = await runCas(['serve', '--help'], {});
    assert.equal(help.code, 0, help.stderr);
    for (const flag of (serverContainer()['args'] as string[]).filter((arg) => arg.startsWith('--'))) {
      assert.ok(help.stdout.includes(flag), `cas serve --help lacks ${flag}`);
    }
  });

  it('grants lease rights on its own lease', () => {
    assert.deepEqual(find('Role', 'mycas')['rules'], [
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['mycas-primary'], verbs: ['get', 'update'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    ]);
  });

  it('keeps the backup pods without a token', () => {
    assert.equal(find('DaemonSet')['spec'].template.spec.automountServiceAccountToken, false);
  });

  it('adds the watchdog for the same lease', () => {
    const args = find('Deployment', 'mycas-watchdog')['spec'].template.spec.containers[0].args as string[];
    assert.equal(args[args.indexOf('--lease-name') + 1], primaryLeaseName('mycas'));
    assert.equal(args[args.indexOf('--not-ready-delay') + 1], '90');
    assert.deepEqual(find('Role', 'mycas-watchdog')['rules'][1].resourceNames, ['mycas-primary']);
  });
});
