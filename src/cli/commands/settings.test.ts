import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FILE_NAMES } from '../../config/defaults.js';
import type { OwnerSettings } from '../../server/owner-settings.js';
import { runCas, tempDir } from '../../server/testing/cas-process.js';
import { clientFor, newIdentity, startTestCas, type TestCas } from '../../server/testing/in-process.js';

/** `cas provision --owner-config` and `cas settings get|set` as CLI processes against an in-process CAS. */

const OTHER_KEY_HASH = 'cd'.repeat(32);

describe('cas settings CLI', () => {
  let cas: TestCas;
  let files: string;
  let ownerEnv: NodeJS.ProcessEnv;
  let strangerEnv: NodeJS.ProcessEnv;

  before(async () => {
    cas = await startTestCas();
    files = tempDir('settings-cli');
    ownerEnv = { CAS_HOME: join(files, 'owner-home') };
    strangerEnv = { CAS_HOME: join(files, 'stranger-home') };
  });

  after(async () => {
    await cas?.close();
  });

  function settingsFile(name: string, text: string): string {
    const path = join(files, name);
    writeFileSync(path, text);
    return path;
  }

  const tokenFile = (): string => join(cas.dataDir, FILE_NAMES.provisioningToken);

  it('provision rejects an invalid file first', async () => {
    const file = settingsFile('bad.yaml', 'sessions:\n  topLevelCreator: []\n');
    const result = await runCas(['provision', '--cas', cas.url.href, '--token-file', tokenFile(), '--owner-config', file], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /sessions\.topLevelCreator: unknown setting/);
    const status = await clientFor(cas.url, await newIdentity()).status();
    assert.equal(status.provisioned, false);
  });

  it('provision applies the owner config', async () => {
    const file = settingsFile('owner.yaml', `sessions:\n  topLevelCreators:\n    - ${OTHER_KEY_HASH}\n`);
    const result = await runCas(['provision', '--cas', cas.url.href, '--token-file', tokenFile(), '--owner-config', file, '--output', 'json'], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    const output = JSON.parse(result.stdout) as { owner: string; changedSettings: string[]; settings: OwnerSettings };
    assert.deepEqual(output.changedSettings, ['sessions.topLevelCreators']);
    assert.deepEqual(output.settings.sessions.topLevelCreators, [OTHER_KEY_HASH]);
  });

  it('provision explains a failed apply', async () => {
    // A body limit that the settings request exceeds makes the apply fail after provisioning succeeded.
    const small = await startTestCas({ bodyLimitBytes: 4096 });
    try {
      const creators = Array.from({ length: 100 }, (_, index) => index.toString(16).padStart(64, '0'));
      const file = settingsFile('large.json', JSON.stringify({ sessions: { topLevelCreators: creators } }));
      const env = { CAS_HOME: join(files, 'small-owner-home') };
      const result = await runCas(['provision', '--cas', small.url.href, '--token-file', join(small.dataDir, FILE_NAMES.provisioningToken), '--owner-config', file], env);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /provisioned the CAS at https:\/\/127\.0\.0\.1:\d+ \(owner key hash [0-9a-f]{64}\), but applying .*large\.json failed/);
      assert.ok(result.stderr.includes(`run cas settings set ${file} --cas ${small.url.origin}`), result.stderr);
      assert.equal((await clientFor(small.url, await newIdentity()).status()).provisioned, true);
    } finally {
      await small.close();
    }
  });

  it('get and set round trip', async () => {
    const attest = await runCas(['attest', '--cas', cas.url.href, '--accept-simulation'], ownerEnv);
    assert.equal(attest.code, 0, attest.stderr);

    const got = await runCas(['settings', 'get', '--cas', cas.url.href, '--output', 'json'], ownerEnv);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual((JSON.parse(got.stdout) as { settings: OwnerSettings }).settings, { backup: { acceptSimulatedEvidence: true }, sessions: { topLevelCreators: [OTHER_KEY_HASH] }, audit: { recordSessionReads: true } });

    const file = settingsFile('next.json', '{"backup": {"acceptSimulatedEvidence": false}}');
    const set = await runCas(['settings', 'set', file, '--cas', cas.url.href], ownerEnv);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stderr, /changed CAS settings: backup\.acceptSimulatedEvidence, sessions\.topLevelCreators/);
    assert.match(set.stdout, /acceptSimulatedEvidence: false/);

    const text = await runCas(['settings', 'get', '--cas', cas.url.href], ownerEnv);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /acceptSimulatedEvidence: false/);
    assert.match(text.stdout, /topLevelCreators: null/);
  });

  it('set rejects an invalid file locally', async () => {
    const file = settingsFile('typo.yaml', 'backup:\n  acceptSimulatedEvidence: maybe\n');
    const result = await runCas(['settings', 'set', file, '--cas', cas.url.href], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /backup\.acceptSimulatedEvidence:/);
  });

  it('rejects a client that is not the owner', async () => {
    const attest = await runCas(['attest', '--cas', cas.url.href, '--accept-simulation'], strangerEnv);
    assert.equal(attest.code, 0, attest.stderr);
    const got = await runCas(['settings', 'get', '--cas', cas.url.href], strangerEnv);
    assert.notEqual(got.code, 0);
    assert.match(got.stderr, /only the CAS owner may read or change the CAS settings/);
    const set = await runCas(['settings', 'set', join(files, 'owner.yaml'), '--cas', cas.url.href], strangerEnv);
    assert.notEqual(set.code, 0);
    assert.match(set.stderr, /only the CAS owner may read or change the CAS settings/);
    const unchanged = await runCas(['settings', 'get', '--cas', cas.url.href, '--output', 'json'], ownerEnv);
    assert.deepEqual((JSON.parse(unchanged.stdout) as { settings: OwnerSettings }).settings.sessions.topLevelCreators, null);
  });
});
