import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CLIENT_CERT_FILE, CLIENT_KEY_FILE, PINNED_DIR, writePinnedCertificate } from '../../client/home.js';
import { FILE_NAMES } from '../../config/defaults.js';
import { simulationPlatform } from '../../store/platform.js';
import { casCliPath } from '../../testing/paths.js';
import { certificateFingerprint, keyHashOfCertificate } from '../../tls/certificates.js';
import { primaryLeaseName } from '../manifests/high-availability.js';
import { objectNames } from '../manifests/names.js';
import { runPlugin, scratchHome } from '../testing/plugin-process.js';
import { TestApiServer } from '../testing/test-api-server.js';
import { TestKubelet } from '../testing/test-kubelet.js';

/**
 * The whole default path of `kubectl provision cas`: apply, wait for readiness, port-forward through the
 * API server's WebSocket, then attest, pin and provision a real `cas serve`, and authorize the backup
 * registrar. The test kubelet starts that process from the applied StatefulSet, and the token reaches it
 * only through the mounted Secret. The test API server's DaemonSet controller puts a registration pod on
 * every node, and the test kubelet runs its init container as a real `cas backup register` process.
 */

const NAMESPACE = 'confidential';
const DCAP_KEY = 'e2e-dcap-key-5b1f0c9a7d3e42';
/** The primary runs on the first node, so that node's platform is the primary's own. */
const NODES = ['node-a', 'node-b'];

let api: TestApiServer;
let kubelet: TestKubelet;
let kubeletRoot: string;
let home: ReturnType<typeof scratchHome>;
let env: Record<string, string>;
let first: Awaited<ReturnType<typeof runPlugin>>;
let currentRegistrarKeyHash: string | undefined;

before(async () => {
  api = await TestApiServer.start();
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cas-image-pull', namespace: NAMESPACE }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': 'e30=' } });
  for (const node of NODES) api.addNode(node);
  kubeletRoot = mkdtempSync(join(tmpdir(), 'test-kubelet-'));
  kubelet = new TestKubelet(api, kubeletRoot, { primaryNode: NODES[0]! });
  kubelet.attach();
  home = scratchHome(api.kubeconfig('default'));
  env = { HOME: home.dir, KUBECONFIG: home.kubeconfigPath, CAS_HOME: home.casHome };
  first = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--verbose', '--timeout', '40s', '-o', 'json'], env);
});

after(async () => {
  await kubelet.stop();
  await api.close();
});

describe('kubectl provision cas end to end', () => {
  it('waits, provisions and pins', () => {
    assert.equal(kubelet.failure, undefined);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /statefulset "mycas" rolling update complete: 1 pods at revision/);
    assert.match(first.stderr, /CAS "mycas" provisioned: owner is the client identity in CAS_HOME/);
    const result = JSON.parse(first.stdout) as { provisioned: boolean; pinnedUrls: string[]; certificateSha256: string };
    assert.equal(result.provisioned, true);
    assert.deepEqual(result.pinnedUrls, ['https://mycas.confidential.svc:8081']);
  });

  it('primary holds its Lease within its Role', async () => {
    // The primary renews every quarter of the lease period (15 s by default): wait for one renewal.
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases`;
    const renewed = (): boolean => api.requests.some((request) => request.method === 'PUT' && request.path.startsWith(leasePath));
    for (let attempt = 0; attempt < 300 && !renewed(); attempt++) {
      await sleep(100);
    }
    const lease = api.get('coordination.k8s.io/v1', 'Lease', NAMESPACE, primaryLeaseName('mycas'));
    assert.ok(lease, `no Lease ${primaryLeaseName('mycas')} in the test API server`);
    const pod = api.get('v1', 'Pod', NAMESPACE, objectNames('mycas').primaryPod);
    assert.equal(lease['spec'].holderIdentity, `${objectNames('mycas').primaryPod}/${pod?.['metadata'].uid}`);
    const rules = api.get('rbac.authorization.k8s.io/v1', 'Role', NAMESPACE, objectNames('mycas').role)!['rules'] as Array<{ apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[] }>;
    const leaseRequests = api.requests.filter((request) => request.path.startsWith(leasePath));
    assert.ok(leaseRequests.some((request) => request.method === 'POST'), 'the Lease was never created');
    assert.ok(leaseRequests.some((request) => request.method === 'PUT'), 'the Lease was never renewed');
    for (const request of leaseRequests) {
      const name = request.path.split('/leases/')[1];
      const verb = ({ GET: name === undefined ? 'list' : 'get', POST: 'create', PUT: 'update' } as Record<string, string>)[request.method] ?? request.method;
      const allowed = rules.some(
        (rule) =>
          rule.apiGroups.includes('coordination.k8s.io') &&
          rule.resources.includes('leases') &&
          rule.verbs.includes(verb) &&
          (rule.resourceNames === undefined || (name !== undefined && rule.resourceNames.includes(name))),
      );
      assert.ok(allowed, `${request.method} ${request.path} (${verb}) is not granted by ${JSON.stringify(rules)}`);
    }
  });

  it('deploys the failover watchdog', () => {
    const deployment = api.get('apps/v1', 'Deployment', NAMESPACE, 'mycas-watchdog');
    assert.ok(deployment, 'no watchdog Deployment');
    const args = deployment['spec'].template.spec.containers[0].args as string[];
    assert.equal(args[args.indexOf('--lease-name') + 1], primaryLeaseName('mycas'));
    assert.equal(args[args.indexOf('--not-ready-delay') + 1], '60');
    assert.ok(api.get('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', undefined, `cas-watchdog-${NAMESPACE}-mycas`), 'no watchdog ClusterRoleBinding');
  });

  it('went through the port-forward', () => {
    const upgrades = api.requests.filter((request) => request.method === 'UPGRADE');
    assert.ok(upgrades.length > 0);
    for (const upgrade of upgrades) {
      assert.equal(upgrade.path, `/api/v1/namespaces/${NAMESPACE}/pods/mycas-0/portforward`);
      assert.equal(upgrade.query.get('ports'), '8081');
    }
  });

  it('pins the served certificate under the service URL only', () => {
    const pins = readdirSync(join(home.casHome, PINNED_DIR));
    assert.deepEqual(pins, ['mycas.confidential.svc_8081.pem']);
    const pinned = certificateFingerprint(readFileSync(join(home.casHome, PINNED_DIR, pins[0]!), 'utf8'));
    const listening = kubelet
      .logLines()
      .map((line) => { try { return JSON.parse(line) as { msg?: string; certificateSha256?: string }; } catch { return {}; } })
      .find((entry) => entry.msg === 'CAS listening');
    assert.equal(pinned, listening?.certificateSha256);
    assert.equal((JSON.parse(first.stdout) as { certificateSha256: string }).certificateSha256, pinned);
  });

  it('metrics answer on the annotated path', async () => {
    const statefulSet = api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!;
    const annotations = statefulSet['spec'].template.metadata.annotations as Record<string, string>;
    const entry = kubelet
      .logLines()
      .map((line) => { try { return JSON.parse(line) as { msg?: string; url?: string }; } catch { return {}; } })
      .find((candidate) => candidate.msg === 'metrics listening');
    assert.ok(entry?.url, 'cas serve logged no metrics address');
    const url = new URL(entry.url);
    assert.equal(url.pathname, annotations['prometheus.io/path']);
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /^# HELP /m);
  });

  it('deletes the token Secret', () => {
    assert.equal(api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').provisioningTokenSecret), undefined);
    assert.ok(api.requests.some((request) => request.method === 'DELETE' && request.path.endsWith(`/secrets/${objectNames('mycas').provisioningTokenSecret}`)));
  });

  it('writes the backup registrar Secret', () => {
    const secret = api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').backupRegistrarSecret);
    assert.ok(secret, 'no backup registrar Secret');
    const data = secret['data'] as Record<string, string>;
    assert.deepEqual(Object.keys(data).sort(), ['cas-cert.pem', 'client-cert.pem', 'client-key.pem']);
    const pinned = readFileSync(join(home.casHome, PINNED_DIR, 'mycas.confidential.svc_8081.pem'), 'utf8');
    assert.equal(Buffer.from(data['cas-cert.pem']!, 'base64').toString('utf8'), pinned);
    const registrarKey = keyHashOfCertificate(Buffer.from(data['client-cert.pem']!, 'base64').toString('utf8'));
    assert.equal((JSON.parse(first.stdout) as { backupRegistrarKeyHash: string }).backupRegistrarKeyHash, registrarKey);
    assert.notEqual(registrarKey, (JSON.parse(first.stdout) as { clientKeyHash: string }).clientKeyHash, 'the registrar must not be the owner');
    const privateKey = Buffer.from(data['client-key.pem']!, 'base64').toString('utf8');
    assert.equal(first.stdout.includes(privateKey) || first.stderr.includes(privateKey), false);
  });

  it('authorizes the registrar as the owner', () => {
    const result = JSON.parse(first.stdout) as { backupRegistrarKeyHash: string; backupRegistrarAuthorized: boolean };
    assert.equal(result.backupRegistrarAuthorized, true);
    assert.ok(first.stderr.includes(`authorized the backup registrar (key sha256 ${result.backupRegistrarKeyHash}) to register nodes as backup targets`), first.stderr);
    const ownerKey = readFileSync(join(home.casHome, CLIENT_KEY_FILE), 'utf8');
    assert.equal(first.stdout.includes(ownerKey) || first.stderr.includes(ownerKey), false);
    for (const request of api.requests) {
      assert.equal(JSON.stringify(request.body ?? '').includes(Buffer.from(ownerKey).toString('base64')), false, `${request.method} ${request.path} carries the owner's key`);
      assert.equal(JSON.stringify(request.body ?? '').includes(ownerKey.split('\n')[1]!), false, `${request.method} ${request.path} carries the owner's key`);
    }
  });

  it('registers every node as a backup target', async () => {
    await waitForReadyNodes(NODES.length);
    const registrar = registrarKeyHash();
    const listed = await listBackupTargets();
    assert.deepEqual(listed.registrars.map((entry) => entry.keyHash), [registrar]);
    const [primaryNode, ...otherNodes] = NODES;
    const primary = listed.platforms.find((platform) => platform.platformId === nodePlatformId(primaryNode!));
    assert.ok(primary, `the primary's node ${primaryNode} is not in ${JSON.stringify(listed.platforms)}`);
    assert.equal(primary.primary, true);
    assert.equal(primary.registeredBy, 'initial');
    for (const node of otherNodes) {
      const entry = listed.platforms.find((platform) => platform.platformId === nodePlatformId(node));
      assert.ok(entry, `node ${node} is not registered: ${JSON.stringify(listed.platforms)}`);
      assert.equal(entry.registeredBy, registrar);
      assert.equal(entry.evidenceType, 'simulation');
      assert.equal(entry.primary, false);
    }
    assert.equal(listed.platforms.length, NODES.length);
    for (const node of NODES) {
      const succeeded = kubelet.initContainerRuns.filter((run) => run.node === node && run.code === 0);
      assert.equal(succeeded.length, 1, `node ${node}: ${JSON.stringify(kubelet.initContainerRuns.filter((run) => run.node === node))}`);
      assert.ok(succeeded[0]!.output.includes(nodePlatformId(node)), succeeded[0]!.output);
    }
  });

  it('registers a node that joins later', async () => {
    api.addNode('node-c');
    await waitForReadyNodes(NODES.length + 1);
    const listed = await listBackupTargets();
    const entry = listed.platforms.find((platform) => platform.platformId === nodePlatformId('node-c'));
    assert.ok(entry, `node-c is not registered: ${JSON.stringify(listed.platforms)}`);
    assert.equal(entry.registeredBy, registrarKeyHash());
    assert.equal(listed.platforms.length, NODES.length + 1);
  });

  it('replaces a revoked registrar key', async () => {
    const revoked = registrarKeyHash();
    await casAsOwner(['backup', 'revoke-registrar', revoked]);
    api.addNode('node-d');
    // Two rejected attempts in the same pod: the second must replace the identity copies of the first.
    for (let attempt = 0; attempt < 300; attempt++) {
      const rejected = kubelet.initContainerRuns.filter((run) => run.node === 'node-d' && /only the CAS owner may register/.test(run.output));
      if (rejected.length >= 2) break;
      await sleep(100);
    }
    const runs = kubelet.initContainerRuns.filter((run) => run.node === 'node-d');
    assert.ok(runs.filter((run) => /only the CAS owner may register/.test(run.output)).length >= 2, JSON.stringify(runs));
    assert.ok(runs.every((run) => run.code !== 0), JSON.stringify(runs));

    // The plugin never authorizes a stored key that the owner revoked: it writes and authorizes a new one.
    const rerun = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--timeout', '40s', '-o', 'json'], env);
    assert.equal(rerun.code, 0, rerun.stderr);
    const replacement = (JSON.parse(rerun.stdout) as { backupRegistrarKeyHash: string }).backupRegistrarKeyHash;
    assert.notEqual(replacement, revoked);
    assert.ok(rerun.stderr.includes(`(sha256 ${revoked}) was not authorized (revoked, written by someone else, or left by an interrupted run), so it was replaced by a new key (sha256 ${replacement})`), rerun.stderr);
    const secret = api.get('v1', 'Secret', NAMESPACE, objectNames('mycas').backupRegistrarSecret)!;
    assert.equal(keyHashOfCertificate(Buffer.from(secret['data']['client-cert.pem'], 'base64').toString('utf8')), replacement);
    currentRegistrarKeyHash = replacement;

    await waitForReadyNodes(NODES.length + 2);
    const listed = await listBackupTargets();
    assert.deepEqual(listed.registrars.map((registrar) => registrar.keyHash), [replacement]);
    const entry = listed.platforms.find((platform) => platform.platformId === nodePlatformId('node-d'));
    assert.ok(entry, `node-d is not registered: ${JSON.stringify(listed.platforms)}`);
    assert.equal(entry.registeredBy, replacement);
    for (const node of [...NODES.slice(1), 'node-c']) {
      const earlier = listed.platforms.find((platform) => platform.platformId === nodePlatformId(node));
      assert.equal(earlier?.registeredBy, revoked, 'revoking a registrar keeps the platforms it registered');
    }
  });

  it('re-run keeps the owner and reconciles', async () => {
    const second = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--timeout', '40s'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /CAS "mycas" was already provisioned; its owner is unchanged/);
    assert.ok(second.stderr.includes(`the backup registrar (key sha256 ${registrarKeyHash()}) was already authorized`), second.stderr);
    assert.match(second.stderr, /4 of 4 nodes registered as backup targets/);
    assert.equal(api.list('v1', 'PersistentVolumeClaim', NAMESPACE).length, 3);
  });

  it('--cas-url skips the port-forward', async () => {
    const casUrl = kubelet.primaryUrl();
    const upgradesBefore = api.requests.filter((request) => request.method === 'UPGRADE').length;
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--cas-url', casUrl, '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(api.requests.filter((request) => request.method === 'UPGRADE').length, upgradesBefore);
    const result = JSON.parse(run.stdout) as { provisioned: boolean; pinnedUrls: string[] };
    assert.equal(result.provisioned, false);
    assert.deepEqual(result.pinnedUrls, ['https://mycas.confidential.svc:8081', new URL(casUrl).origin]);
  });

  it('another identity cannot provision', async () => {
    const intruder = scratchHome(api.kubeconfig('default'));
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--timeout', '40s'], { HOME: intruder.dir, KUBECONFIG: intruder.kubeconfigPath, CAS_HOME: intruder.casHome });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /already provisioned; its owner is unchanged/);
    assert.match(run.stderr, /warning: the client identity in CAS_HOME \(key sha256 [0-9a-f]{64}\) is not the CAS owner, so it cannot authorize the backup registrar/);
    assert.ok(run.stderr.includes(`cas backup authorize-registrar ${registrarKeyHash()}`), run.stderr);
  });

  it('deletes nothing but the token Secret', () => {
    const deletes = api.requests.filter((request) => request.method === 'DELETE');
    assert.ok(deletes.length > 0);
    for (const request of deletes) {
      assert.equal(request.path, `/api/v1/namespaces/${NAMESPACE}/secrets/${objectNames('mycas').provisioningTokenSecret}`);
    }
    assert.equal(api.list('v1', 'PersistentVolumeClaim', NAMESPACE).length, 3);
  });

  it('DCAP key and token stay out of logs', async () => {
    await kubelet.stop();
    const casOutput = kubelet.logLines().join('\n');
    assert.ok(casOutput.includes('CAS listening'), 'no CAS log collected');
    assert.equal(casOutput.includes(DCAP_KEY), false);
    for (const output of [first.stdout, first.stderr]) assert.equal(output.includes(DCAP_KEY), false);
    const tokenCreate = api.requests.find((request) => request.method === 'POST' && request.path.endsWith('/secrets'));
    assert.ok(tokenCreate, 'the token Secret was never created');
    const token = Buffer.from((tokenCreate.body as { data: Record<string, string> }).data['provisioning-token']!, 'base64').toString('utf8');
    assert.ok(token.length >= 32);
    for (const output of [first.stdout, first.stderr, casOutput]) assert.equal(output.includes(token), false);
    for (const request of api.requests) {
      if (request === tokenCreate) continue;
      assert.equal(JSON.stringify(request.body ?? '').includes(token), false, `${request.method} ${request.path} carries the token`);
    }
  });
});

/** The registrar key hash in the Secret now: the first run's, until a test replaces it. */
function registrarKeyHash(): string {
  return currentRegistrarKeyHash ?? (JSON.parse(first.stdout) as { backupRegistrarKeyHash: string }).backupRegistrarKeyHash;
}

/** Waits until the DaemonSet counts this many ready pods, that is, registered nodes. */
async function waitForReadyNodes(count: number): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    const status = api.get('apps/v1', 'DaemonSet', NAMESPACE, 'mycas-backup')?.['status'] as { desiredNumberScheduled?: number; numberReady?: number } | undefined;
    if (status?.desiredNumberScheduled === count && status.numberReady === count) return;
    assert.equal(kubelet.failure, undefined);
    await sleep(100);
  }
  assert.fail(`the DaemonSet never had ${count} ready pods: ${JSON.stringify(kubelet.initContainerRuns.slice(-3))}`);
}

/** The platform id of the key that the node's hostPath platform directory holds. */
function nodePlatformId(node: string): string {
  const volumes = api.get('apps/v1', 'DaemonSet', NAMESPACE, 'mycas-backup')!['spec'].template.spec.volumes as Array<{ hostPath?: { path: string } }>;
  const hostPath = volumes.find((volume) => volume.hostPath !== undefined)!.hostPath!.path;
  const keyFile = join(kubeletRoot, 'nodes', node, 'host', hostPath, FILE_NAMES.platformKey);
  assert.ok(existsSync(keyFile), `node ${node} has no platform key`);
  return simulationPlatform(createPrivateKey(readFileSync(keyFile, 'utf8'))).id;
}

/** Runs `cas backup list --output json` as the owner. */
async function listBackupTargets(): Promise<{ platforms: Array<{ platformId: string; registeredBy: string; evidenceType: string; primary: boolean }>; registrars: Array<{ keyHash: string }> }> {
  return JSON.parse(await casAsOwner(['backup', 'list', '--output', 'json'])) as Awaited<ReturnType<typeof listBackupTargets>>;
}

/**
 * Runs the cas CLI with the owner's identity against the running primary's loopback address, from a copy
 * of the owner's CAS_HOME, so that the pins in the plugin's CAS_HOME stay as the plugin left them.
 * Returns stdout.
 */
async function casAsOwner(args: string[]): Promise<string> {
  const ownerHome = mkdtempSync(join(tmpdir(), 'owner-home-'));
  for (const file of [CLIENT_KEY_FILE, CLIENT_CERT_FILE]) copyFileSync(join(home.casHome, file), join(ownerHome, file));
  const casUrl = kubelet.primaryUrl();
  writePinnedCertificate(new URL(casUrl), readFileSync(join(home.casHome, PINNED_DIR, 'mycas.confidential.svc_8081.pem'), 'utf8'), ownerHome);
  const { stdout } = await promisify(execFile)(process.execPath, [casCliPath(), ...args, '--cas', casUrl], {
    env: { PATH: process.env['PATH'], CAS_HOME: ownerHome },
  });
  return stdout;
}
