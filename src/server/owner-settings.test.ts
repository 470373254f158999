import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BackupClient } from '../backup/backup-client.js';
import type { CasClient } from '../client/cas-client.js';
import { DEFAULTS, FILE_NAMES } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { openPlatform } from '../store/index.js';
import { DEFAULT_OWNER_SETTINGS, parseOwnerSettingsText } from './owner-settings.js';
import { clientFor, newIdentity, startTestCas, type TestCas, type TestIdentity } from './testing/in-process.js';

async function rejection(action: () => Promise<unknown>): Promise<CasError> {
  try {
    await action();
  } catch (error) {
    assert.ok(error instanceof CasError, `expected a CasError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

function syncRejection(action: () => unknown): CasError {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof CasError, `expected a CasError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

interface AuditLine {
  event: string;
  outcome: string;
  actor: { keyHash?: string };
  target?: Record<string, string>;
  details: { changed?: string[]; sessionHash?: string };
}

const SESSION = (name: string): string => `name: ${name}
version: "0.3"
services:
  - name: app
    command: /bin/app
security:
  attestation:
    mode: none
`;

describe('owner settings document', () => {
  it('accepts YAML and JSON', () => {
    assert.deepEqual(parseOwnerSettingsText('backup:\n  acceptSimulatedEvidence: false\n', 'a.yaml'), { backup: { acceptSimulatedEvidence: false } });
    assert.deepEqual(parseOwnerSettingsText('{"sessions": {"topLevelCreators": null}}', 'a.json'), { sessions: { topLevelCreators: null } });
    assert.deepEqual(parseOwnerSettingsText('', 'empty.yaml'), {});
  });

  it('rejects unknown keys by path', () => {
    const error = syncRejection(() => parseOwnerSettingsText('backup:\n  acceptSimulated: false\nextra: 1\n', 'bad.yaml'));
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, /backup\.acceptSimulated: unknown setting/);
    assert.match(error.message, /extra: unknown setting/);
    assert.match(error.message, /bad\.yaml/);
  });

  it('rejects wrong types by path', () => {
    const error = syncRejection(() => parseOwnerSettingsText('sessions:\n  topLevelCreators: [abc]\n', 'bad.yaml'));
    assert.match(error.message, /sessions\.topLevelCreators\.0: expected a client key hash/);
    const flag = syncRejection(() => parseOwnerSettingsText('backup:\n  acceptSimulatedEvidence: "no"\n', 'bad.yaml'));
    assert.match(flag.message, /backup\.acceptSimulatedEvidence:/);
  });

  it('rejects duplicate keys and non-mappings', () => {
    assert.equal(syncRejection(() => parseOwnerSettingsText('backup: {}\nbackup: {}\n', 'dup.yaml')).code, 'INVALID_ARGUMENT');
    assert.match(syncRejection(() => parseOwnerSettingsText('- 1\n', 'list.yaml')).message, /\(document\)/);
  });
});

describe('owner settings API', () => {
  let cas: TestCas;
  let owner: TestIdentity;
  let stranger: TestIdentity;
  let ownerClient: CasClient;
  let strangerClient: CasClient;

  before(async () => {
    cas = await startTestCas();
    owner = await newIdentity();
    stranger = await newIdentity();
    ownerClient = clientFor(cas.url, owner);
    strangerClient = clientFor(cas.url, stranger);
  });

  after(async () => {
    await cas?.close();
  });

  function auditEntries(): AuditLine[] {
    const log = readFileSync(join(cas.dataDir, DEFAULTS.auditSubdir, FILE_NAMES.auditLog), 'utf8');
    return log.trim().split('\n').map((line) => JSON.parse(line) as AuditLine);
  }

  it('rejects settings before provisioning', async () => {
    const error = await rejection(() => ownerClient.ownerSettings());
    assert.equal(error.code, 'NOT_PROVISIONED');
  });

  it('returns the defaults to the owner', async () => {
    const token = readFileSync(join(cas.dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
    await ownerClient.provision(token);
    assert.deepEqual((await ownerClient.ownerSettings()).settings, DEFAULT_OWNER_SETTINGS);
  });

  it('rejects a client that is not the owner', async () => {
    assert.equal((await rejection(() => strangerClient.ownerSettings())).code, 'PERMISSION_DENIED');
    const put = await rejection(() => strangerClient.replaceOwnerSettings({ backup: { acceptSimulatedEvidence: false } }));
    assert.equal(put.code, 'PERMISSION_DENIED');
    assert.deepEqual((await ownerClient.ownerSettings()).settings, DEFAULT_OWNER_SETTINGS);
  });

  it('rejects an unknown key in the request', async () => {
    const error = await rejection(() => ownerClient.replaceOwnerSettings({ backup: { acceptSimulated: false } } as never));
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, /backup\.acceptSimulated: unknown setting/);
  });

  it('limits top-level session creators', async () => {
    const result = await ownerClient.replaceOwnerSettings({ sessions: { topLevelCreators: [owner.keyHash] } });
    assert.deepEqual(result.changed, ['sessions.topLevelCreators']);
    assert.deepEqual(result.settings.sessions.topLevelCreators, [owner.keyHash]);

    const denied = await rejection(() => strangerClient.createSession(SESSION('stranger-top')));
    assert.equal(denied.code, 'PERMISSION_DENIED');
    assert.match(denied.message, /sessions\.topLevelCreators/);
    assert.equal((await ownerClient.createSession(SESSION('owner-top'))).name, 'owner-top');

    await ownerClient.replaceOwnerSettings({});
    assert.equal((await strangerClient.createSession(SESSION('stranger-top'))).name, 'stranger-top');
  });

  it('rejects simulated backup evidence when disabled', async () => {
    const { certificatePem } = await ownerClient.casEvidence('ab'.repeat(16));
    const backup = BackupClient.withIdentity({ casUrl: cas.url, clientKeyPem: owner.privateKeyPem, clientCertificatePem: owner.certificatePem, casCertificatePem: certificatePem });
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(cas.dataDir, '..', 'backup-platform') });

    await ownerClient.replaceOwnerSettings({ backup: { acceptSimulatedEvidence: false } });
    const error = await rejection(() => backup.register(platform));
    assert.equal(error.code, 'SIMULATION_NOT_ALLOWED');
    assert.match(error.message, /backup\.acceptSimulatedEvidence/);

    await ownerClient.replaceOwnerSettings({ backup: { acceptSimulatedEvidence: true } });
    assert.equal((await backup.register(platform)).added, true);
  });

  it('audits changed keys without values', async () => {
    const unchanged = await ownerClient.replaceOwnerSettings({ backup: { acceptSimulatedEvidence: true } });
    assert.deepEqual(unchanged.changed, []);
    await ownerClient.replaceOwnerSettings({ sessions: { topLevelCreators: [stranger.keyHash] } });

    const updates = auditEntries().filter((entry) => entry.event === 'cas.settings.updated');
    assert.deepEqual(
      updates.map((entry) => entry.details.changed),
      [['sessions.topLevelCreators'], ['sessions.topLevelCreators'], ['backup.acceptSimulatedEvidence'], ['backup.acceptSimulatedEvidence'], ['sessions.topLevelCreators']],
    );
    for (const entry of updates) assert.equal(entry.actor.keyHash, owner.keyHash);
    assert.ok(!updates.some((entry) => JSON.stringify(entry).includes(stranger.keyHash)), 'an audit entry contains a setting value');
  });

  it('records session reads by default', async () => {
    const result = await ownerClient.replaceOwnerSettings({ sessions: { topLevelCreators: [stranger.keyHash] }, audit: { recordSessionReads: true } });
    assert.ok(!result.changed.includes('audit.recordSessionReads'), 'recording session reads is not the default');
    const entriesBefore = auditEntries().length;

    const view = await ownerClient.readSession('owner-top');
    const denied = await rejection(() => strangerClient.readSession('owner-top'));
    assert.equal(denied.code, 'PERMISSION_DENIED');

    const reads = auditEntries().slice(entriesBefore).filter((entry) => entry.event === 'session.read');
    assert.equal(reads.length, 2);
    assert.equal(reads[0]!.outcome, 'success');
    assert.equal(reads[0]!.actor.keyHash, owner.keyHash);
    assert.deepEqual(reads[0]!.target, { session: 'owner-top' });
    assert.deepEqual(reads[0]!.details, { sessionHash: view.hash });
    assert.equal(reads[1]!.outcome, 'denied');
    assert.equal(reads[1]!.actor.keyHash, stranger.keyHash);

    const disabled = await ownerClient.replaceOwnerSettings({ sessions: { topLevelCreators: [stranger.keyHash] }, audit: { recordSessionReads: false } });
    assert.deepEqual(disabled.changed, ['audit.recordSessionReads']);
    const afterDisable = auditEntries().length;
    await ownerClient.readSession('owner-top');
    assert.equal(auditEntries().slice(afterDisable).filter((entry) => entry.event === 'session.read').length, 0);
  });

  it('keeps settings across a restart', async () => {
    // The settings are stored in the database, so a new server on the same data directory enforces them.
    await cas.close();
    cas = await startTestCas({ dataDir: cas.dataDir, platformDir: cas.platformDir });
    ownerClient = clientFor(cas.url, owner);
    assert.deepEqual((await ownerClient.ownerSettings()).settings.sessions.topLevelCreators, [stranger.keyHash]);
  });
});
