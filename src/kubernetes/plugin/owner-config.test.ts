import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CLIENT_CERT_FILE, CLIENT_KEY_FILE, PINNED_DIR, writePinnedCertificate } from '../../client/home.js';
import type { OwnerSettings } from '../../server/owner-settings.js';
import { casCliPath } from '../../testing/paths.js';
import { runPlugin, scratchHome } from '../testing/plugin-process.js';
import { TestApiServer } from '../testing/test-api-server.js';
import { TestKubelet } from '../testing/test-kubelet.js';

/**
 * `kubectl provision cas --owner-config FILE` against the test API server, whose test kubelet runs a real
 * `cas serve`: an invalid file fails before any cluster request, a valid one is applied after provisioning
 * and again, without changes, on a re-run. `cas settings get|set` then read and replace the settings.
 */

const NAMESPACE = 'confidential';
const DCAP_KEY = 'owner-config-dcap-key-3c8e1f';
const OTHER_KEY_HASH = 'ab'.repeat(32);

let api: TestApiServer;
let kubelet: TestKubelet;
let home: ReturnType<typeof scratchHome>;
let env: Record<string, string>;
let files: string;

before(async () => {
  api = await TestApiServer.start();
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cas-image-pull', namespace: NAMESPACE }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': 'e30=' } });
  api.addNode('node-a');
  kubelet = new TestKubelet(api, mkdtempSync(join(tmpdir(), 'test-kubelet-')), { primaryNode: 'node-a' });
  kubelet.attach();
  home = scratchHome(api.kubeconfig('default'));
  env = { HOME: home.dir, KUBECONFIG: home.kubeconfigPath, CAS_HOME: home.casHome };
  files = mkdtempSync(join(tmpdir(), 'owner-config-'));
});

after(async () => {
  await kubelet.stop();
  await api.close();
});

function settingsFile(name: string, text: string): string {
  const path = join(files, name);
  writeFileSync(path, text);
  return path;
}

describe('kubectl provision cas --owner-config', () => {
  it('help explains the flag', async () => {
    const run = await runPlugin(['cas', '--help'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /--owner-config <FILE>/);
    assert.match(run.stdout, /replaces the CAS settings/);
  });

  it('invalid file touches nothing', async () => {
    const file = settingsFile('bad.yaml', 'backup:\n  acceptSimulatedEvidence: false\n  acceptSimulation: false\n');
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--owner-config', file], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /backup\.acceptSimulation: unknown setting/);
    assert.deepEqual(api.requests, []);

    const dryRun = await runPlugin(['cas', 'mycas', '--dry-run', '--owner-config', file], env);
    assert.notEqual(dryRun.code, 0);
    assert.match(dryRun.stderr, /backup\.acceptSimulation: unknown setting/);
    assert.equal(dryRun.stdout, '');
  });

  it('missing file touches nothing', async () => {
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--owner-config', join(files, 'absent.yaml')], env);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /cannot read the owner settings file .*absent\.yaml: ENOENT/);
    assert.deepEqual(api.requests, []);
  });

  it('applies the file after provisioning', async () => {
    const file = settingsFile('owner.yaml', `backup:\n  acceptSimulatedEvidence: false\nsessions:\n  topLevelCreators: [${OTHER_KEY_HASH}]\n`);
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-backup', '--timeout', '40s', '--owner-config', file, '-o', 'json'], env);
    assert.equal(kubelet.failure, undefined);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stderr.includes(`applied CAS settings from ${file}; changed: backup.acceptSimulatedEvidence, sessions.topLevelCreators`), run.stderr);
    const result = JSON.parse(run.stdout) as { provisioned: boolean; changedSettings: string[] };
    assert.equal(result.provisioned, true);
    assert.deepEqual(result.changedSettings, ['backup.acceptSimulatedEvidence', 'sessions.topLevelCreators']);

    const settings = await readSettings();
    assert.deepEqual(settings, { backup: { acceptSimulatedEvidence: false }, sessions: { topLevelCreators: [OTHER_KEY_HASH] }, audit: { recordSessionReads: true } });
  });

  it('re-run applies it idempotently', async () => {
    const file = join(files, 'owner.yaml');
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-backup', '--timeout', '40s', '--owner-config', file, '-o', 'json'], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /was already provisioned; its owner is unchanged/);
    assert.ok(run.stderr.includes(`CAS settings from ${file} were already in effect`), run.stderr);
    assert.deepEqual((JSON.parse(run.stdout) as { changedSettings: string[] }).changedSettings, []);
  });

  it('cas settings set replaces them', async () => {
    const file = settingsFile('defaults.json', '{"backup": {"acceptSimulatedEvidence": true}}');
    const output = JSON.parse(await casAsOwner(['settings', 'set', file, '--output', 'json'])) as { settings: OwnerSettings; changed: string[] };
    assert.deepEqual(output.changed, ['backup.acceptSimulatedEvidence', 'sessions.topLevelCreators']);
    assert.deepEqual(await readSettings(), { backup: { acceptSimulatedEvidence: true }, sessions: { topLevelCreators: null }, audit: { recordSessionReads: true } });
  });

  it('another identity cannot apply settings', async () => {
    const intruder = scratchHome(api.kubeconfig('default'));
    const file = join(files, 'owner.yaml');
    const run = await runPlugin(['cas', 'mycas', '-n', NAMESPACE, '--dcap-api', DCAP_KEY, '--no-backup', '--timeout', '40s', '--owner-config', file], {
      HOME: intruder.dir,
      KUBECONFIG: intruder.kubeconfigPath,
      CAS_HOME: intruder.casHome,
    });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /only the CAS owner may read or change the CAS settings/);
    assert.deepEqual(await readSettings(), { backup: { acceptSimulatedEvidence: true }, sessions: { topLevelCreators: null }, audit: { recordSessionReads: true } });
  });
});

async function readSettings(): Promise<OwnerSettings> {
  return (JSON.parse(await casAsOwner(['settings', 'get', '--output', 'json'])) as { settings: OwnerSettings }).settings;
}

/** Runs the cas CLI as the owner against the primary's loopback address, from a copy of the owner's CAS_HOME. */
async function casAsOwner(args: string[]): Promise<string> {
  const ownerHome = mkdtempSync(join(tmpdir(), 'owner-home-'));
  for (const file of [CLIENT_KEY_FILE, CLIENT_CERT_FILE]) copyFileSync(join(home.casHome, file), join(ownerHome, file));
  const casUrl = kubelet.primaryUrl();
  writePinnedCertificate(new URL(casUrl), readFileSync(join(home.casHome, PINNED_DIR, 'mycas.confidential.svc_8081.pem'), 'utf8'), ownerHome);
  const { stdout } = await promisify(execFile)(process.execPath, [casCliPath(), ...args, '--cas', casUrl], { env: { PATH: process.env['PATH'], CAS_HOME: ownerHome } });
  return stdout;
}
