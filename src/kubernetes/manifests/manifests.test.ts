import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { DEFAULTS, DEPLOYMENT_PATHS, ENV_VARS, FILE_NAMES, HEALTH_PATHS } from '../../config/defaults.js';
import { loadServerSettings } from '../../config/settings.js';
import { StrictSchemaValidator } from '../testing/strict-schema.js';
import { buildManifests, type KubeObject } from './index.js';
import { DEFAULT_STORAGE, validateOptions, type CasDeploymentOptions } from './options.js';
import { IMAGE_CAS_CLI, objectNames, PROVISIONING_TOKEN_FILE, VOLUME_NAMES } from './names.js';
import { testDeploymentOptions, type Json } from './test-support.js';

const DCAP_KEY = 'dcap-key-for-manifest-tests-0123456789';

const options = testDeploymentOptions;

function find(objects: KubeObject[], kind: string, name?: string): Json {
  const found = objects.find((object) => object.kind === kind && (name === undefined || object.metadata?.name === name));
  assert.ok(found, `no ${kind}${name === undefined ? '' : ` ${name}`} in the manifests`);
  return found as Json;
}

let validator: StrictSchemaValidator;

before(() => {
  const kinds = new Map<string, { apiVersion: string; kind: string }>();
  for (const object of buildManifests(options(), DCAP_KEY)) kinds.set(`${object.apiVersion}/${object.kind}`, object);
  kinds.set('v1/Secret', { apiVersion: 'v1', kind: 'Secret' });
  validator = StrictSchemaValidator.create([...kinds.values()]);
});

describe('buildManifests schema', () => {
  it('every object validates strictly', async () => {
    const variants = [options(), options({ storageClass: 'fast', serviceType: 'LoadBalancer', nodeSelector: { 'sgx.intel.com/capable': 'true' }, imagePullSecret: undefined, mode: 'hardware' })];
    for (const variant of variants) {
      for (const object of buildManifests(variant, DCAP_KEY)) {
        assert.deepEqual(await validator.validate(object), [], `${object.kind} ${object.metadata?.name}`);
      }
    }
  });

  it('rejects an unknown container field', async () => {
    const statefulSet = structuredClone(find(buildManifests(options(), DCAP_KEY), 'StatefulSet'));
    statefulSet['spec'].template.spec.containers[0].livenesProbe = { httpGet: { path: '/', port: 1 } };
    const problems = await validator.validate(statefulSet);
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.path, 'spec.template.spec.containers[0].livenesProbe');
  });

  it('rejects an unknown top-level spec field', async () => {
    const service = structuredClone(find(buildManifests(options(), DCAP_KEY), 'Service'));
    service['spec'].clusterIp = 'None';
    const problems = await validator.validate(service);
    assert.deepEqual(problems.map((problem) => problem.path), ['spec.clusterIp']);
  });

  it('rejects an unknown field in a claim template', async () => {
    const statefulSet = structuredClone(find(buildManifests(options(), DCAP_KEY), 'StatefulSet'));
    statefulSet['spec'].volumeClaimTemplates[1].spec.size = '1Gi';
    const problems = await validator.validate(statefulSet);
    assert.deepEqual(problems.map((problem) => problem.path), ['spec.volumeClaimTemplates[1].spec.size']);
  });

  it('rejects a value of the wrong type', async () => {
    const statefulSet = structuredClone(find(buildManifests(options(), DCAP_KEY), 'StatefulSet'));
    statefulSet['spec'].replicas = 'one';
    const problems = await validator.validate(statefulSet);
    assert.ok(problems.some((problem) => problem.path === 'spec.replicas'), JSON.stringify(problems));
  });

  it('rejects a label map with a non-string value', async () => {
    const secret = structuredClone(find(buildManifests(options(), DCAP_KEY), 'Secret'));
    secret['metadata'].labels.count = 3;
    const problems = await validator.validate(secret);
    assert.ok(problems.some((problem) => problem.path === 'metadata.labels.count'), JSON.stringify(problems));
  });
});

describe('buildManifests agreement with cas serve', () => {
  const objects = buildManifests(options(), DCAP_KEY);
  const statefulSet = find(objects, 'StatefulSet');
  const podSpec = statefulSet['spec'].template.spec;
  const server = podSpec.containers[0];
  const args: string[] = server.args;

  function flag(name: string): string {
    const index = args.indexOf(name);
    assert.ok(index >= 0, `${name} missing from ${args.join(' ')}`);
    assert.ok(index + 1 < args.length, `${name} has no value in ${args.join(' ')}`);
    return args[index + 1]!;
  }

  it('serve arguments pass the server settings schema', () => {
    assert.equal(args[0], 'serve');
    const settings = loadServerSettings({
      dataDir: flag('--data-dir'),
      listen: flag('--listen'),
      platformDir: flag('--platform-dir'),
      mode: flag('--mode'),
      snapshotIntervalSeconds: flag('--snapshot-interval'),
      snapshotDir: flag('--snapshot-dir'),
      auditLog: flag('--audit-log'),
      provisioningTokenFile: flag('--provisioning-token-file'),
    });
    assert.equal(settings.dataDir, DEPLOYMENT_PATHS.dataDir);
    assert.equal(settings.snapshotDir, DEPLOYMENT_PATHS.snapshotDir);
    assert.equal(settings.auditLog, DEPLOYMENT_PATHS.auditLog);
    assert.equal(settings.platformDir, DEPLOYMENT_PATHS.platformDir);
    assert.equal(settings.listen.port, DEFAULTS.listenPort);
    assert.equal(settings.snapshotIntervalSeconds, DEFAULTS.snapshotIntervalSeconds);
    assert.equal(settings.snapshotsEnabled, true);
    assert.equal(settings.provisioningTokenFile, PROVISIONING_TOKEN_FILE);
  });

  it('every server path lies on its volume', () => {
    const mountOf = (volume: string): string => server.volumeMounts.find((mount: Json) => mount.name === volume).mountPath;
    assert.equal(mountOf(VOLUME_NAMES.database), DEPLOYMENT_PATHS.dataDir);
    assert.equal(mountOf(VOLUME_NAMES.snapshots), DEPLOYMENT_PATHS.snapshotDir);
    assert.equal(mountOf(VOLUME_NAMES.auditLog), dirname(DEPLOYMENT_PATHS.auditLog));
    assert.equal(join(mountOf(VOLUME_NAMES.auditLog), FILE_NAMES.auditLog), DEPLOYMENT_PATHS.auditLog);
    assert.equal(mountOf(VOLUME_NAMES.platform), DEPLOYMENT_PATHS.platformDir);
    assert.equal(join(mountOf(VOLUME_NAMES.provisioningToken), FILE_NAMES.provisioningToken), PROVISIONING_TOKEN_FILE);
  });

  it('claims are named as the deployment documents', () => {
    const templates: string[] = statefulSet['spec'].volumeClaimTemplates.map((claim: Json) => claim.metadata.name);
    const claims = templates.map((template) => `${template}-${statefulSet['metadata'].name}-0`);
    assert.ok(claims.includes(`${VOLUME_NAMES.snapshots}-mycas-0`));
    assert.equal(objectNames('mycas').claims.snapshots, 'cas-database-snapshots-mycas-0');
    assert.deepEqual(new Set(claims), new Set(Object.values(objectNames('mycas').claims)));
    for (const template of templates) {
      assert.ok(server.volumeMounts.some((mount: Json) => mount.name === template), `claim template ${template} is not mounted`);
    }
  });

  it('probes use the health paths over HTTPS', () => {
    const apiPort = server.ports.find((port: Json) => port.containerPort === DEFAULTS.listenPort);
    assert.ok(apiPort, 'no container port for the API');
    const probes = { startup: server.startupProbe, liveness: server.livenessProbe, readiness: server.readinessProbe };
    for (const [kind, probe] of Object.entries(probes)) {
      assert.equal(probe.httpGet.path, HEALTH_PATHS[kind as keyof typeof HEALTH_PATHS], kind);
      assert.equal(probe.httpGet.scheme, 'HTTPS', kind);
      assert.equal(probe.httpGet.port, apiPort.name, kind);
    }
  });

  it('metrics port is exposed and annotated', () => {
    assert.ok(server.ports.some((port: Json) => port.containerPort === DEFAULTS.metricsPort));
    const service = find(objects, 'Service');
    assert.ok(service['spec'].ports.some((port: Json) => port.port === DEFAULTS.metricsPort));
    assert.equal(service['metadata'].annotations['prometheus.io/port'], String(DEFAULTS.metricsPort));
    assert.equal(statefulSet['spec'].template.metadata.annotations['prometheus.io/port'], String(DEFAULTS.metricsPort));
  });

  it('network policy admits only the CAS ports', () => {
    const policy = find(objects, 'NetworkPolicy', 'mycas');
    const ports = policy['spec'].ingress.flatMap((rule: Json) => rule.ports.map((port: Json) => port.port)).sort();
    assert.deepEqual(ports, [DEFAULTS.listenPort, DEFAULTS.metricsPort].sort());
    const backupPolicy = find(objects, 'NetworkPolicy', 'mycas-backup');
    assert.equal(backupPolicy['spec'].ingress, undefined);
    assert.deepEqual(backupPolicy['spec'].policyTypes, ['Ingress']);
  });

  it('pods run non-root with a read-only root', () => {
    for (const workload of [statefulSet, find(objects, 'DaemonSet')]) {
      const spec = workload['spec'].template.spec;
      assert.equal(spec.securityContext.runAsNonRoot, true);
      // Only the primary renews a Lease, so only its pod gets a token.
      assert.equal(spec.automountServiceAccountToken, workload === statefulSet);
      for (const container of [...spec.containers, ...spec.initContainers]) {
        assert.equal(container.securityContext.readOnlyRootFilesystem, true, container.name);
        assert.equal(container.securityContext.allowPrivilegeEscalation, false, container.name);
        assert.deepEqual(container.securityContext.capabilities.drop, ['ALL'], container.name);
      }
      const rootContainers = [...spec.containers, ...spec.initContainers].filter((container: Json) => container.securityContext.runAsUser === 0);
      assert.deepEqual(rootContainers.map((container: Json) => container.name), ['prepare-platform-dir']);
    }
  });

  it('DCAP key appears only in its Secret', () => {
    const encoded = Buffer.from(DCAP_KEY).toString('base64');
    for (const object of objects) {
      const text = JSON.stringify(object);
      const isKeySecret = object.kind === 'Secret' && object.metadata?.name === objectNames('mycas').dcapSecret;
      assert.equal(text.includes(DCAP_KEY), false, `${object.kind} contains the key in plain text`);
      assert.equal(text.includes(encoded), isKeySecret, `${object.kind} ${object.metadata?.name}`);
    }
    const env = server.env.find((variable: Json) => variable.name === ENV_VARS.dcapApiKey);
    assert.equal(env.valueFrom.secretKeyRef.name, objectNames('mycas').dcapSecret);
    assert.equal(env.value, undefined);
  });

  it('claims survive deletion and scale-down', () => {
    assert.deepEqual(statefulSet['spec'].persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' });
  });

  it('backup pods register with the primary', () => {
    const daemonSet = find(objects, 'DaemonSet');
    const register = daemonSet['spec'].template.spec.initContainers.find((container: Json) => container.name === 'register-backup');
    assert.deepEqual(register.args.slice(0, 2), ['backup', 'register']);
    assert.equal(register.args[register.args.indexOf('--cas') + 1], `https://mycas.confidential.svc:${DEFAULTS.listenPort}`);
    assert.equal(register.args[register.args.indexOf('--platform-dir') + 1], DEPLOYMENT_PATHS.platformDir);
    assert.equal(register.args[register.args.indexOf('--mode') + 1], 'simulation');
    assert.equal(register.env.find((variable: Json) => variable.name === 'CAS_HOME').value, DEPLOYMENT_PATHS.casHome);
    assert.deepEqual(register.command.slice(0, 2), ['sh', '-c']);
    assert.ok(register.command[2].includes(`exec node ${IMAGE_CAS_CLI} "$@"`));
    const registrarVolume = daemonSet['spec'].template.spec.volumes.find((volume: Json) => volume.secret !== undefined);
    assert.equal(registrarVolume.secret.secretName, objectNames('mycas').backupRegistrarSecret);
    assert.equal(registrarVolume.secret.optional, true);
  });

  it('storage class and node selector reach the objects', () => {
    const custom = buildManifests(options({ storageClass: 'fast', nodeSelector: { sgx: 'yes' } }), DCAP_KEY);
    const customSet = find(custom, 'StatefulSet');
    for (const claim of customSet['spec'].volumeClaimTemplates) assert.equal(claim.spec.storageClassName, 'fast');
    assert.deepEqual(customSet['spec'].template.spec.nodeSelector, { sgx: 'yes' });
    assert.deepEqual(find(custom, 'DaemonSet')['spec'].template.spec.nodeSelector, { sgx: 'yes' });
    for (const claim of statefulSet['spec'].volumeClaimTemplates) assert.equal(claim.spec.storageClassName, undefined);
  });
});

describe('validateOptions', () => {
  const invalid: Array<[string, Partial<CasDeploymentOptions>]> = [
    ['uppercase name', { name: 'MyCas' }],
    ['name too long', { name: 'a'.repeat(39) }],
    ['name with dot', { name: 'my.cas' }],
    ['zero interval', { snapshotIntervalSeconds: 0 }],
    ['fractional interval', { snapshotIntervalSeconds: 1.5 }],
    ['unknown service type', { serviceType: 'ExternalName' as never }],
    ['relative host path', { platformHostPath: 'var/lib' }],
    ['bad storage size', { storage: { ...DEFAULT_STORAGE, snapshots: 'five' } }],
  ];
  for (const [label, override] of invalid) {
    it(`rejects ${label}`, () => {
      assert.throws(() => validateOptions(options(override)), { code: 'INVALID_ARGUMENT' });
    });
  }

  it('accepts the longest name', () => {
    const name = 'a'.repeat(38);
    validateOptions(options({ name }));
    assert.ok(objectNames(name).claims.snapshots.length <= 63);
  });
});
