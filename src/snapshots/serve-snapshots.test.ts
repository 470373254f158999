import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../errors/exit-codes.js';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../server/testing/cas-process.js';
import { CasDatabase, loadOrCreateSimulationPlatform, type Platform } from '../store/index.js';
import { listSnapshots, verifySnapshot } from './inspect.js';
import { restoreSnapshot } from './restore.js';

/**
 * Snapshots of a real `cas serve` process: parallel session writes through the built CLI while snapshots
 * are taken every second, restore of a snapshot and `cas serve` on it, and the exit code when the
 * snapshot directory is replaced by a file.
 */

function sessionText(name: string): string {
  return `name: ${name}
version: "0.3"
services:
  - name: app
    command: /bin/true
secrets:
  - name: password
    kind: ascii
    size: 24
security:
  attestation:
    mode: none
`;
}

/** Polls `check` every 200 ms until it returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function provisionAndAttest(cas: CasProcess, dataDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const token = readFileSync(join(dataDir, 'provisioning-token'), 'utf8').trim();
  const provisioned = await runCas(['provision', '--cas', cas.url, '--token', token], env);
  assert.equal(provisioned.code, 0, provisioned.stderr);
  const attested = await runCas(['attest', '--cas', cas.url, '--accept-simulation'], env);
  assert.equal(attested.code, 0, attested.stderr);
}

describe('cas serve snapshots under write load', () => {
  const root = tempDir('snapshot-load');
  const dataDir = join(root, 'data');
  const platformDir = join(root, 'platform');
  const snapshotDir = join(root, 'snapshots');
  const env = { CAS_HOME: join(root, 'home') };
  const names: string[] = [];
  let cas: CasProcess;
  let platform: Platform;

  before(async () => {
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', platformDir, '--snapshot-dir', snapshotDir, '--snapshot-interval', '1', '--listen', '127.0.0.1:0'] });
    platform = await loadOrCreateSimulationPlatform(platformDir);
    await provisionAndAttest(cas, dataDir, env);
  });

  after(async () => {
    await cas?.stop();
  });

  it('takes consistent snapshots while sessions are written in parallel', async () => {
    const workers = [0, 1, 2].map(async (worker) => {
      for (let i = 0; i < 3; i += 1) {
        const name = `load-${worker}-${i}`;
        const file = join(root, `${name}.yaml`);
        writeFileSync(file, sessionText(name));
        const result = await runCas(['session', 'create', file, '--cas', cas.url], env);
        assert.equal(result.code, 0, result.stderr);
        names.push(name);
      }
    });
    await Promise.all(workers);

    // Wait until a snapshot covers every session, then check every snapshot taken so far.
    await waitFor('a snapshot with every session', async () => {
      const newest = (await listSnapshots(snapshotDir)).find((entry) => entry.status === 'valid');
      if (newest === undefined) return undefined;
      const verification = await verifySnapshot(newest.path, { platform });
      return verification.opened?.sessions === names.length ? true : undefined;
    });
    const snapshots = await listSnapshots(snapshotDir);
    assert.ok(snapshots.length >= 2, `expected several snapshots, found ${snapshots.length}`);
    for (const snapshot of snapshots) {
      assert.equal(snapshot.status, 'valid', `${snapshot.name}: ${snapshot.problem ?? ''}`);
      const verification = await verifySnapshot(snapshot.path, { platform });
      assert.equal(verification.opened?.changeCounter, verification.manifest.changeCounter);

      // Each one restores into a data directory that opens read-write, as cas serve opens it.
      const restoredDir = join(root, 'each', snapshot.name);
      await restoreSnapshot(snapshot.path, { dataDir: restoredDir, platform });
      const restored = CasDatabase.open({ dataDir: restoredDir, platform });
      try {
        assert.equal(restored.countSessions(), verification.opened?.sessions);
        assert.equal(restored.changeCounter(), verification.manifest.changeCounter);
      } finally {
        restored.close();
      }
    }
    const windows = cas.logLines.filter((line) => line.includes('"snapshot created"')).map((line) => JSON.parse(line) as { readOnlyWindowMs?: unknown });
    assert.ok(windows.length > 0 && windows.every((entry) => typeof entry.readOnlyWindowMs === 'number'), 'each snapshot logs its read-only window');
  });

  it('takes no snapshot while the database is unchanged', async () => {
    // The previous test waited for a snapshot of the last write, and nothing has written since.
    const before = (await listSnapshots(snapshotDir)).map((entry) => entry.name);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const after = (await listSnapshots(snapshotDir)).map((entry) => entry.name);
    assert.deepEqual(after, before, 'three idle intervals added no snapshot');
  });

  it('restores the newest snapshot and serves it with every session', async () => {
    const newest = (await listSnapshots(snapshotDir)).find((entry) => entry.status === 'valid')!;
    const restoredDir = join(root, 'restored');
    const restored = await runCas(['snapshot', 'restore', newest.path, '--data-dir', restoredDir, '--platform-dir', platformDir, '--output', 'json'], env);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal((JSON.parse(restored.stdout) as { snapshot: string }).snapshot, newest.name);

    await cas.stop();
    // The audit log lives on its own volume in production; the restored CAS continues the same log.
    mkdirSync(join(restoredDir, 'audit'));
    copyFileSync(join(dataDir, 'audit', 'cas_audit.log'), join(restoredDir, 'audit', 'cas_audit.log'));
    const second = await startCasProcess({ args: ['--data-dir', restoredDir, '--platform-dir', platformDir, '--no-snapshots', '--listen', '127.0.0.1:0'] });
    try {
      assert.ok(second.logLines.some((line) => line.includes('CAS starts from a restored snapshot')), 'the restore is logged with its age');
      const attested = await runCas(['attest', '--cas', second.url, '--accept-simulation'], env);
      assert.equal(attested.code, 0, attested.stderr);
      const listed = await runCas(['session', 'list', '--cas', second.url, '--output', 'json'], env);
      assert.equal(listed.code, 0, listed.stderr);
      const sessions = (JSON.parse(listed.stdout) as { sessions: Array<{ name: string }> }).sessions.map((s) => s.name).sort();
      assert.deepEqual(sessions, [...names].sort());
    } finally {
      assert.equal(await second.stop(), 0);
    }

    // The generated secrets in the restored database equal the primary's.
    const original = CasDatabase.open({ dataDir, platform, readOnly: true });
    const copy = CasDatabase.open({ dataDir: restoredDir, platform, readOnly: true });
    try {
      for (const name of names) assert.deepEqual(copy.getSession(name)?.secrets, original.getSession(name)?.secrets, name);
    } finally {
      original.close();
      copy.close();
    }
  });
});

describe('cas serve when a snapshot fails', () => {
  it('exits with EXIT.SNAPSHOT_FAILED after closing the database', async () => {
    const root = tempDir('snapshot-fail');
    const dataDir = join(root, 'data');
    const platformDir = join(root, 'platform');
    const snapshotDir = join(root, 'snapshots');
    const cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', platformDir, '--snapshot-dir', snapshotDir, '--snapshot-interval', '1', '--listen', '127.0.0.1:0'] });
    const exited = new Promise<number | null>((resolve) => cas.process.once('exit', (code) => resolve(code)));
    try {
      // The log line comes after the snapshot's last fsync, so the directory is no longer in use.
      await waitFor('the first snapshot', async () => (cas.logLines.some((line) => line.includes('"snapshot created"')) ? true : undefined));
      renameSync(snapshotDir, `${snapshotDir}.moved`);
      writeFileSync(snapshotDir, 'a file where the snapshot directory was');
      // A change, so that the next tick must write a snapshot.
      const token = readFileSync(join(dataDir, 'provisioning-token'), 'utf8').trim();
      const provisioned = await runCas(['provision', '--cas', cas.url, '--token', token], { CAS_HOME: join(root, 'home') });
      assert.equal(provisioned.code, 0, provisioned.stderr);

      assert.equal(await exited, EXIT.SNAPSHOT_FAILED);
      assert.match(cas.stderr(), /not a directory/);
      assert.ok(cas.logLines.some((line) => line.includes('"closed database"')), 'the database was closed before the exit');
    } finally {
      await cas.stop();
    }
    // Closed cleanly: the database opens again and the last change is there.
    const platform = await loadOrCreateSimulationPlatform(platformDir);
    const db = CasDatabase.open({ dataDir, platform, readOnly: true });
    try {
      assert.ok(db.getMeta('cas.owner') !== undefined, 'the provisioning made before the failure is stored');
    } finally {
      db.close();
    }
  });
});

describe('cas serve retention and --cas-database-recovery', () => {
  it('keeps the configured count and starts from a named snapshot', async () => {
    const root = tempDir('snapshot-recovery');
    const dataDir = join(root, 'data');
    const platformDir = join(root, 'platform');
    const snapshotDir = join(root, 'snapshots');
    const env = { CAS_HOME: join(root, 'home') };
    const args = ['--data-dir', dataDir, '--platform-dir', platformDir, '--snapshot-dir', snapshotDir, '--snapshot-interval', '1', '--listen', '127.0.0.1:0'];
    const cas = await startCasProcess({ args: [...args, '--snapshot-keep', '2', '--snapshot-keep-days', '0'] });
    let created = 0;
    try {
      await provisionAndAttest(cas, dataDir, env);
      for (let i = 0; i < 4; i += 1) {
        const file = join(root, `s${i}.yaml`);
        writeFileSync(file, sessionText(`recovery-${i}`));
        const result = await runCas(['session', 'create', file, '--cas', cas.url], env);
        assert.equal(result.code, 0, result.stderr);
        const before = cas.logLines.filter((line) => line.includes('"snapshot created"')).length;
        await waitFor('a snapshot of the new session', async () => (cas.logLines.filter((line) => line.includes('"snapshot created"')).length > before ? true : undefined));
        created += 1;
      }
    } finally {
      assert.equal(await cas.stop(), 0);
    }
    assert.ok(cas.logLines.some((line) => line.includes('snapshot deleted by retention policy')));
    const remaining = await listSnapshots(snapshotDir);
    assert.equal(remaining.length, 2, remaining.map((entry) => entry.name).join(', '));

    // Start from the older of the two: it lacks the last session.
    const older = remaining[1]!;
    const platform = await loadOrCreateSimulationPlatform(platformDir);
    const expectedSessions = (await verifySnapshot(older.path, { platform })).opened!.sessions;
    assert.ok(expectedSessions < created);
    const recovered = await startCasProcess({ args: [...args, '--no-snapshots', '--cas-database-recovery', older.path] });
    try {
      assert.ok(recovered.logLines.some((line) => line.includes('restored the database from a snapshot') && line.includes('"ageSeconds"')));
      assert.equal((await runCas(['attest', '--cas', recovered.url, '--accept-simulation'], env)).code, 0);
      const listed = await runCas(['session', 'list', '--cas', recovered.url, '--output', 'json'], env);
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal((JSON.parse(listed.stdout) as { sessions: unknown[] }).sessions.length, expectedSessions);
    } finally {
      assert.equal(await recovered.stop(), 0);
    }
    const audit = readFileSync(join(dataDir, 'audit', 'cas_audit.log'), 'utf8');
    assert.match(audit, new RegExp(`"event":"restore".*"snapshot":"${older.name.replace(/[.]/g, '\\.')}"`));
    assert.ok(readdirSync(dataDir).some((name) => name.startsWith('replaced-')), 'the replaced database is kept');
  });
});
