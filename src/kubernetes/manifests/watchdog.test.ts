import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS } from '../../config/defaults.js';
import { runCas } from '../../server/testing/cas-process.js';
import { StrictSchemaValidator } from '../testing/strict-schema.js';
import type { CasDeploymentOptions } from './options.js';
import { testDeploymentOptions, type Json } from './test-support.js';
import { buildWatchdogManifests, DEFAULT_WATCHDOG_OPTIONS } from './watchdog.js';

const options: CasDeploymentOptions = testDeploymentOptions();

function objects(): Json[] {
  return buildWatchdogManifests(options, { notReadyDelaySeconds: 45, leaseName: 'mycas-primary' }) as Json[];
}

function find(kind: string): Json {
  const found = objects().find((object) => object['kind'] === kind);
  assert.ok(found, `no ${kind}`);
  return found;
}

describe('buildWatchdogManifests', () => {
  it('validates strictly', async () => {
    const built = objects();
    const validator = StrictSchemaValidator.create(built.map((object) => ({ apiVersion: object['apiVersion'], kind: object['kind'] })));
    for (const object of built) {
      assert.deepEqual(await validator.validate(object), [], `${object['kind']} ${object['metadata'].name}`);
    }
  });

  it('grants get on nodes and nothing else cluster-wide', () => {
    assert.deepEqual(find('ClusterRole')['rules'], [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }]);
    assert.equal(find('ClusterRole')['metadata'].name, 'cas-watchdog-confidential-mycas');
    assert.equal(find('ClusterRoleBinding')['subjects'][0].namespace, 'confidential');
  });

  it('limits pod and lease rights to named objects', () => {
    assert.deepEqual(find('Role')['rules'], [
      { apiGroups: [''], resources: ['pods'], resourceNames: ['mycas-0'], verbs: ['get', 'delete'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['mycas-primary'], verbs: ['get'] },
    ]);
  });

  it('runs cas watchdog with the chosen delay', () => {
    const container = find('Deployment')['spec'].template.spec.containers[0];
    assert.deepEqual(container.args, ['watchdog', '--pod', 'mycas-0', '--lease-name', 'mycas-primary', '--not-ready-delay', '45', '--interval', '5']);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(find('Deployment')['spec'].template.spec.serviceAccountName, 'mycas-watchdog');
  });

  it('uses only flags that cas watchdog accepts', async () => {
    const help = await runCas(['watchdog', '--help'], {});
    assert.equal(help.code, 0, help.stderr);
    const args = find('Deployment')['spec'].template.spec.containers[0].args as string[];
    for (const flag of args.filter((arg) => arg.startsWith('--'))) {
      assert.ok(help.stdout.includes(flag), `cas watchdog --help lacks ${flag}`);
    }
  });

  it('defaults to the serve lease name', () => {
    assert.equal(DEFAULT_WATCHDOG_OPTIONS.leaseName, DEFAULTS.leaseName);
  });
});
