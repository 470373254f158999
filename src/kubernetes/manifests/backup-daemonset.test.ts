import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { CLIENT_CERT_FILE, CLIENT_KEY_FILE, PINNED_DIR } from '../../client/home.js';
import { casCliPath } from '../../testing/paths.js';
import { backupDaemonSet } from './backup-daemonset.js';
import { buildManifests } from './index.js';
import { BACKUP_REGISTRAR_KEYS, BACKUP_REGISTRAR_MOUNT, CONTAINER_NAMES, CONTAINER_USER_ID, IMAGE_CAS_CLI } from './names.js';
import type { CasDeploymentOptions } from './options.js';
import { testDeploymentOptions } from './test-support.js';

const OPTIONS: CasDeploymentOptions = testDeploymentOptions({ imagePullSecret: undefined });

/**
 * Whether this process can run the script as the pod's user, as the kubelet does: it must be root, and the
 * pod's user must reach the built CLI. A checkout in a private directory (`mktemp -d` makes it mode 0700)
 * is out of that user's reach, so the script then runs as root and the ownership checks are skipped.
 */
const asPodUser = process.getuid?.() === 0 && reachableByOthers(casCliPath());

/** True when every directory above `path` is searchable and `path` is readable by users other than its owner. */
function reachableByOthers(path: string): boolean {
  if ((statSync(path).mode & 0o004) === 0) return false;
  for (let directory = dirname(path); ; directory = dirname(directory)) {
    if ((statSync(directory).mode & 0o001) === 0) return false;
    if (dirname(directory) === directory) return true;
  }
}

/**
 * Runs the registration init container's shell script with the Secret mount and CAS_HOME mapped to
 * directories, and `cas --help` in place of the registration. As root, it runs as the pod's user, so
 * file modes apply as in the pod.
 */
function runRegisterScript(secretDir: string, casHome: string): Promise<{ code: number | null; output: string }> {
  const container = backupDaemonSet(OPTIONS).spec!.template.spec!.initContainers!.find((candidate) => candidate.name === CONTAINER_NAMES.registerBackup)!;
  const command = container.command!.map((word) => (word === BACKUP_REGISTRAR_MOUNT ? secretDir : word.replace(IMAGE_CAS_CLI, casCliPath())));
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, [...command.slice(1), '--help'], {
      env: { PATH: process.env['PATH'], CAS_HOME: casHome },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asPodUser ? { uid: CONTAINER_USER_ID, gid: CONTAINER_USER_ID } : {}),
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('backup registration script', () => {
  it('reruns in the same CAS_HOME', async () => {
    const root = mkdtempSync(join(tmpdir(), 'register-script-'));
    chmodSync(root, 0o711);
    // The kubelet writes Secret files 0440, group fsGroup, and creates an emptyDir writable by the pod.
    const secretDir = join(root, 'secret');
    mkdirSync(secretDir, { mode: 0o755 });
    const files = { [BACKUP_REGISTRAR_KEYS.clientKey]: 'key\n', [BACKUP_REGISTRAR_KEYS.clientCertificate]: 'certificate\n', [BACKUP_REGISTRAR_KEYS.casCertificate]: 'cas\n' };
    for (const [file, text] of Object.entries(files)) {
      writeFileSync(join(secretDir, file), text, { mode: 0o440 });
      if (asPodUser) chownSync(join(secretDir, file), 0, CONTAINER_USER_ID);
    }
    const casHome = join(root, 'cas-home');
    mkdirSync(casHome, { mode: 0o777 });
    chmodSync(casHome, 0o777);

    // A failed registration leaves the copies in the emptyDir, and the kubelet reruns the script there.
    for (const attempt of [1, 2]) {
      const run = await runRegisterScript(secretDir, casHome);
      assert.equal(run.code, 0, `attempt ${attempt}: ${run.output}`);
    }

    const copies = {
      [CLIENT_KEY_FILE]: files[BACKUP_REGISTRAR_KEYS.clientKey],
      [CLIENT_CERT_FILE]: files[BACKUP_REGISTRAR_KEYS.clientCertificate],
      [join(PINNED_DIR, 'mycas.confidential.svc_8081.pem')]: files[BACKUP_REGISTRAR_KEYS.casCertificate],
    };
    for (const [file, text] of Object.entries(copies)) {
      assert.equal(readFileSync(join(casHome, file), 'utf8'), text);
      assert.equal(statSync(join(casHome, file)).mode & 0o077, 0, `${file} is readable by others`);
      if (asPodUser) assert.equal(statSync(join(casHome, file)).uid, CONTAINER_USER_ID);
    }
  });
});

describe('backup registration RBAC', () => {
  it('grants the backup pods no API verb', () => {
    // `cas backup register` connects only to the CAS, and the kubelet delivers the registrar Secret as a volume.
    const objects = buildManifests(OPTIONS, 'dcap-key') as Array<Record<string, any>>;
    const daemonSet = objects.find((object) => object['kind'] === 'DaemonSet')!;
    const podSpec = daemonSet['spec'].template.spec;
    assert.equal(podSpec.automountServiceAccountToken, false);
    assert.equal(JSON.stringify(podSpec.volumes).includes('serviceAccountToken'), false);
    const bindings = objects.filter((object) => object['kind'] === 'RoleBinding' && object['subjects'].some((subject: Record<string, string>) => subject['kind'] === 'ServiceAccount' && subject['name'] === podSpec.serviceAccountName));
    assert.equal(bindings.length, 1);
    // The primary shares the ServiceAccount and its Role holds the primary's Lease verbs only; without a
    // token the backup pods cannot use them.
    const role = objects.find((object) => object['kind'] === 'Role' && object['metadata'].name === bindings[0]!['roleRef'].name)!;
    assert.deepEqual(role['rules'].flatMap((rule: Record<string, string[]>) => rule['resources']), ['leases', 'leases']);
  });
});
