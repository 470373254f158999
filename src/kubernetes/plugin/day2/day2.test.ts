import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PINNED_DIR } from '../../../client/home.js';
import { runCas } from '../../../server/testing/cas-process.js';
import { keyHashOfCertificate } from '../../../tls/certificates.js';
import { runPlugin, scratchHome } from '../../testing/plugin-process.js';
import { TestApiServer } from '../../testing/test-api-server.js';
import { TestKubelet } from '../../testing/test-kubelet.js';

/**
 * The day-2 verbs of `kubectl provision cas` against the test API server, with the test kubelet running
 * the deployed CAS as a real `cas serve` process reached through the API server's port-forward.
 */

const NAMESPACE = 'confidential';
const DCAP_KEY = 'day2-dcap-key-7c3e9a1f42b8d6';

let api: TestApiServer;
let kubelet: TestKubelet;
let home: ReturnType<typeof scratchHome>;
let env: Record<string, string>;
const root = mkdtempSync(join(tmpdir(), 'day2-'));

before(async () => {
  api = await TestApiServer.start();
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cas-image-pull', namespace: NAMESPACE }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': 'e30=' } });
  kubelet = new TestKubelet(api, join(root, 'kubelet'));
  kubelet.attach();
  home = scratchHome(api.kubeconfig(NAMESPACE));
  env = { HOME: home.dir, KUBECONFIG: home.kubeconfigPath, CAS_HOME: home.casHome };
  const deployed = await runPlugin(['cas', 'mycas', '--dcap-api', DCAP_KEY, '--snapshot-interval', '1', '--timeout', '40s'], env);
  assert.equal(deployed.code, 0, deployed.stderr);
});

after(async () => {
  await kubelet.stop();
  await api.close();
});

describe('kubectl provision cas --is-provisioned', () => {
  it('exits 0 for a provisioned CAS', async () => {
    const run = await runPlugin(['cas', 'mycas', '--is-provisioned', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { name: 'mycas', namespace: NAMESPACE, deployed: true, provisioned: true, role: 'primary' });
  });

  it('exits 1 when nothing is deployed', async () => {
    const run = await runPlugin(['cas', 'other', '--is-provisioned'], env);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /statefulset "other" not found in namespace "confidential"/);
    assert.equal(run.stdout, '');
  });

  it('rejects two verbs at once', async () => {
    const run = await runPlugin(['cas', 'mycas', '--is-provisioned', '--verify'], env);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /give one of --is-provisioned, --verify, not several/);
  });
});

describe('kubectl provision cas --print-public-keys', () => {
  it('prints the identity and audit keys', async () => {
    const run = await runPlugin(['cas', 'mycas', '--print-public-keys'], env);
    assert.equal(run.code, 0, run.stderr);
    const keys = [...run.stdout.matchAll(/# (CAS identity key|audit key), key sha256 ([0-9a-f]{64})\n(-----BEGIN PUBLIC KEY-----\n[^]+?-----END PUBLIC KEY-----\n)/g)];
    assert.equal(keys.length, 2, run.stdout);
    for (const [, , keyHash, pem] of keys) {
      const spki = createPublicKey(pem!).export({ type: 'spki', format: 'der' });
      assert.equal(createHash('sha256').update(spki).digest('hex'), keyHash);
    }
    const pinned = readFileSync(join(home.casHome, PINNED_DIR, 'mycas.confidential.svc_8081.pem'), 'utf8');
    assert.equal(keys[0]![2], keyHashOfCertificate(pinned));
    assert.notEqual(keys[1]![2], keys[0]![2]);
  });

  it('prints JSON with -o json', async () => {
    const run = await runPlugin(['cas', 'mycas', '--print-public-keys', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const document = JSON.parse(run.stdout) as { casIdentity: { keyHash: string; publicKeyPem: string }; auditKey: { keyHash: string } };
    assert.match(document.casIdentity.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
    assert.match(document.auditKey.keyHash, /^[0-9a-f]{64}$/);
  });
});

describe('kubectl provision cas --verify', () => {
  it('fails without backup targets', async () => {
    const run = await runPlugin(['cas', 'mycas', '--verify'], env);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /^OK +deployment /m, run.stderr);
    assert.match(run.stdout, /^OK +attestation +evidence verified .*equal to the pinned certificate/m);
    assert.match(run.stdout, /^OK +health +primary, ready/m);
    assert.match(run.stdout, /^FAIL +backups +no backup platform is registered besides the primary/m);
    assert.match(run.stderr, /CAS "mycas" failed 1 check\(s\)/);
  });

  it('passes once a backup target is registered', async () => {
    const casUrl = kubelet.primaryUrl();
    const attest = await runCas(['attest', '--cas', casUrl, '--accept-simulation'], { CAS_HOME: home.casHome });
    assert.equal(attest.code, 0, attest.stderr);
    const backupPlatform = join(root, 'backup-platform');
    mkdirSync(backupPlatform, { recursive: true });
    const register = await runCas(['backup', 'register', '--cas', casUrl, '--platform-dir', backupPlatform], { CAS_HOME: home.casHome });
    assert.equal(register.code, 0, register.stderr);

    const run = await runPlugin(['cas', 'mycas', '--verify', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { passed: boolean; checks: Array<{ check: string; result: string; detail: string }> };
    assert.equal(result.passed, true);
    const byCheck = new Map(result.checks.map((entry) => [entry.check, entry]));
    assert.equal(byCheck.get('attestation')?.result, 'ok');
    assert.equal(byCheck.get('backups')?.result, 'ok');
    assert.match(byCheck.get('backups')?.detail ?? '', /^1 backup platform\(s\) registered/);
    assert.notEqual(byCheck.get('snapshot')?.result, 'fail');
    assert.match(byCheck.get('snapshot')?.detail ?? '', /^newest snapshot-\d{8}T/);
  });

  it('fails for another identity', async () => {
    const stranger = scratchHome(api.kubeconfig(NAMESPACE));
    const run = await runPlugin(['cas', 'mycas', '--verify'], { HOME: stranger.dir, KUBECONFIG: stranger.kubeconfigPath, CAS_HOME: stranger.casHome });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /^WARN +attestation .*CAS_HOME has no pin/m);
    assert.match(run.stdout, /^FAIL +owner +the client identity in CAS_HOME is not the CAS owner/m);
  });
});

describe('kubectl provision cas --report', () => {
  const extract = (file: string): string => {
    const dir = mkdtempSync(join(root, 'extract-'));
    execFileSync('tar', ['-xzf', file, '-C', dir]);
    return dir;
  };
  const allText = (dir: string): string =>
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => readFileSync(join(entry.parentPath, entry.name), 'utf8'))
      .join('\n');

  it('archives manifests, objects, events and logs', async () => {
    api.setPodLog(NAMESPACE, 'mycas-0', 'cas', '{"msg":"CAS listening"}\n');
    api.addEvent(NAMESPACE, { kind: 'Pod', name: 'mycas-0' }, 'Warning', 'BackOff', 'Back-off restarting failed container');
    api.addEvent(NAMESPACE, { kind: 'Pod', name: 'unrelated-0' }, 'Normal', 'Pulled', 'image pulled');
    const file = join(root, 'report.tar.gz');
    const run = await runPlugin(['cas', 'mycas', '--report', file, '--dcap-api', DCAP_KEY], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /Secret values redacted/);
    assert.equal(statSync(file).mode & 0o777, 0o600);

    const listing = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n');
    for (const name of ['README.txt', 'manifests.yaml', 'objects/statefulset.apps_mycas.yaml', 'objects/secret_mycas-dcap-api-key.yaml', 'pods/mycas-0.yaml', 'logs/mycas-0_cas.log', 'events.yaml']) {
      assert.ok(listing.includes(name), `missing ${name} in ${listing.join(', ')}`);
    }
    const dir = extract(file);
    assert.equal(readFileSync(join(dir, 'logs/mycas-0_cas.log'), 'utf8'), '{"msg":"CAS listening"}\n');
    const events = readFileSync(join(dir, 'events.yaml'), 'utf8');
    assert.match(events, /BackOff/);
    assert.doesNotMatch(events, /unrelated-0/);
    assert.match(readFileSync(join(dir, 'objects/secret_mycas-dcap-api-key.yaml'), 'utf8'), new RegExp(`api-key: REDACTED \\(${DCAP_KEY.length} bytes\\)`));
    assert.match(readFileSync(join(dir, 'manifests.yaml'), 'utf8'), new RegExp(`api-key: REDACTED \\(${DCAP_KEY.length} bytes\\)`));

    const text = allText(dir);
    assert.equal(text.includes(DCAP_KEY), false, 'the DCAP key is redacted');
    assert.equal(text.includes(Buffer.from(DCAP_KEY).toString('base64')), false, 'the base64 DCAP key is redacted');
    assert.equal(text.includes('PRIVATE KEY'), false, 'no private key from the registrar Secret');
  });

  it('keeps Secret values with --include-secrets', async () => {
    const file = join(root, 'report-secrets.tar.gz');
    const run = await runPlugin(['cas', 'mycas', '--report', file, '--include-secrets', '--dcap-api', DCAP_KEY], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /Secret values INCLUDED/);
    const dir = extract(file);
    const encodedKey = Buffer.from(DCAP_KEY).toString('base64');
    assert.ok(readFileSync(join(dir, 'objects/secret_mycas-dcap-api-key.yaml'), 'utf8').includes(encodedKey), 'the live Secret keeps its value');
    assert.ok(readFileSync(join(dir, 'manifests.yaml'), 'utf8').includes(encodedKey), 'the rendered Secret keeps its value');
  });

  it('rejects --include-secrets without --report', async () => {
    const run = await runPlugin(['cas', 'mycas', '--include-secrets'], env);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--include-secrets works only with --report FILE/);
  });
});

describe('kubectl provision cas --local-backup', () => {
  it('copies and verifies the newest snapshot', async () => {
    const directory = join(root, 'local-backup');
    const run = await runPlugin(['cas', 'mycas', '--local-backup', directory, '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { snapshot: string; path: string; ageSeconds: number; checks: string[]; bytes: Record<string, number> };
    assert.match(result.snapshot, /^snapshot-\d{8}T\d{6}\.\d{3}Z/);
    assert.equal(result.path, join(directory, result.snapshot));
    assert.deepEqual(readdirSync(directory), [result.snapshot], 'no partial directory is left behind');
    assert.deepEqual(readdirSync(result.path).sort(), ['cas.db', 'cas.key-store', 'manifest.json']);
    assert.equal(statSync(join(result.path, 'cas.db')).size, result.bytes['cas.db']);
    assert.ok(result.checks.includes('signed by the attested CAS identity'));
    assert.match(run.stderr, /copied snapshot snapshot-.* to /);

    // The copy verifies on its own with the cas CLI, and the backup platform registered by the --verify
    // test above opens the copied database with its key.
    const verified = await runCas(['snapshot', 'verify', result.path, '--platform-dir', join(root, 'backup-platform')], {});
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
  });

  it('rejects another identity', async () => {
    const stranger = scratchHome(api.kubeconfig(NAMESPACE));
    const run = await runPlugin(['cas', 'mycas', '--local-backup', join(root, 'stranger-backup')], { HOME: stranger.dir, KUBECONFIG: stranger.kubeconfigPath, CAS_HOME: stranger.casHome });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /only the CAS owner may download snapshots/);
  });
});

describe('kubectl provision cas --upgrade', () => {
  it('refuses when verification fails', async () => {
    const stranger = scratchHome(api.kubeconfig(NAMESPACE));
    const writesBefore = api.requests.filter((request) => request.method === 'PATCH').length;
    const run = await runPlugin(['cas', 'mycas', '--upgrade', '0.2.0'], { HOME: stranger.dir, KUBECONFIG: stranger.kubeconfigPath, CAS_HOME: stranger.casHome });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /CAS "mycas" is not healthy, so it is not upgraded: owner: /);
    assert.equal(api.requests.filter((request) => request.method === 'PATCH').length, writesBefore, 'nothing was applied');
  });

  it('rolls backups first, then the primary', async () => {
    // Play the DaemonSet controller for one node: every applied generation is rolled out at once.
    const kubeletHook = api.onObjectWritten;
    api.onObjectWritten = (object) => {
      kubeletHook?.(object);
      if (object['kind'] === 'DaemonSet') {
        object['status'] = { observedGeneration: object['metadata'].generation, desiredNumberScheduled: 1, updatedNumberScheduled: 1, numberReady: 1 };
      }
    };
    const firstPatch = api.requests.length;
    try {
      const run = await runPlugin(['cas', 'mycas', '--upgrade', '0.2.0', '--timeout', '40s', '-o', 'json'], env);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as { image: string; before: { auditSeq: number; snapshots: string[]; certificateSha256: string }; after: { auditSeq: number; snapshots: string[]; certificateSha256: string } };
      assert.equal(result.image, 'ghcr.io/cas-project/cas:0.2.0');
      assert.equal(result.after.certificateSha256, result.before.certificateSha256);
      assert.ok(result.after.auditSeq > result.before.auditSeq, 'the restarted CAS appended to the same audit log');
      for (const name of result.before.snapshots) assert.ok(result.after.snapshots.includes(name), `snapshot ${name} was lost`);
      assert.match(run.stderr, /daemonset "mycas-backup": 1 of 1 backup registration pods run the new image/);
      assert.match(run.stderr, /statefulset "mycas" rolling update complete/);

      const patches = api.requests.slice(firstPatch).filter((request) => request.method === 'PATCH').map((request) => request.path);
      assert.deepEqual(patches, [`/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/mycas-backup`, `/apis/apps/v1/namespaces/${NAMESPACE}/statefulsets/mycas`]);
      const statefulSet = api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!;
      assert.equal(statefulSet['spec'].template.spec.containers[0].image, 'ghcr.io/cas-project/cas:0.2.0');
      const daemonSet = api.get('apps/v1', 'DaemonSet', NAMESPACE, 'mycas-backup')!;
      assert.equal(daemonSet['spec'].template.spec.containers[0].image, 'ghcr.io/cas-project/cas:0.2.0');
    } finally {
      api.onObjectWritten = kubeletHook;
    }
  });
});

describe('kubectl provision cas --cas-database-recovery', () => {
  it('rejects a name that is not a snapshot', async () => {
    const run = await runPlugin(['cas', 'mycas', '--cas-database-recovery', '../etc'], env);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /invalid --cas-database-recovery "\.\.\/etc"/);
  });

  it('rejects a snapshot that does not exist', async () => {
    const run = await runPlugin(['cas', 'mycas', '--cas-database-recovery', 'snapshot-20000101T000000.000Z'], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /snapshot snapshot-20000101T000000\.000Z is not on the snapshot claim; valid snapshots: snapshot-/);
  });

  it('restarts the primary from the snapshot once', async () => {
    const listed = await runPlugin(['cas', 'mycas', '--local-backup', join(root, 'before-recovery'), '-o', 'json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const snapshot = (JSON.parse(listed.stdout) as { snapshot: string }).snapshot;

    const run = await runPlugin(['cas', 'mycas', '--cas-database-recovery', snapshot, '--timeout', '40s', '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { snapshot: string; restoredAgeSeconds: number; auditSeq: number };
    assert.equal(result.snapshot, snapshot);
    assert.ok(result.restoredAgeSeconds >= 0);
    assert.match(run.stderr, new RegExp(`the primary started from ${snapshot}, created .*: the restored state is \\d+ s old`));
    assert.match(run.stderr, /serverside-applied without --cas-database-recovery/);

    const restored = kubelet.logLines().filter((line) => line.includes('restored the database from a snapshot'));
    assert.equal(restored.length, 1, 'the snapshot is restored exactly once');
    assert.ok(restored[0]!.includes(snapshot));
    const args = api.get('apps/v1', 'StatefulSet', NAMESPACE, 'mycas')!['spec'].template.spec.containers[0].args as string[];
    assert.equal(args.includes('--cas-database-recovery'), false, 'the flag is removed after the recovery');
  });
});
