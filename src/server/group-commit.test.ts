import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { AuditEventInput, AuditHead, AuditLog } from '../audit/index.js';
import { CasError } from '../errors/cas-error.js';
import { silentLogger } from '../logging/logger.js';
import { CasDatabase, openPlatform, type Platform } from '../store/index.js';
import { createSnapshot } from '../snapshots/create-snapshot.js';
import { createSelfSignedCertificate, keyHashOfSpki, type KeyAndCertificate } from '../tls/certificates.js';
import { createCommit, openServerAudit, storeAuditHead } from './audit-setup.js';
import type { ClientKey } from './client-identity.js';
import { parseSession, sessionHash } from '../policy/index.js';
import { GroupCommit } from './group-commit.js';
import { SessionService } from './sessions.js';
import { tempDir } from './testing/cas-process.js';

interface Fixture {
  db: CasDatabase;
  audit: AuditLog;
  root: string;
  platform: Platform;
  casIdentity: KeyAndCertificate;
  close(): Promise<void>;
}

const open: Fixture[] = [];

afterEach(async () => {
  for (const fixture of open.splice(0)) await fixture.close();
});

async function openFixture(): Promise<Fixture> {
  const root = tempDir('group-commit');
  const platform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'platform') });
  const db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
  const casIdentity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
  const { audit } = await openServerAudit({ db, casIdentity, path: join(root, 'audit', 'cas_audit.log'), logger: silentLogger() });
  const fixture = {
    db,
    audit,
    root,
    platform,
    casIdentity,
    async close() {
      await audit.close();
      db.close();
    },
  };
  open.push(fixture);
  return fixture;
}

function entry(session: string): AuditEventInput {
  return { event: 'session.created', actor: { kind: 'client', keyHash: 'c'.repeat(64) }, target: { session }, outcome: 'success', details: {} };
}

function storedHead(db: CasDatabase): AuditHead {
  return JSON.parse(db.getMeta('audit.head')!.toString('utf8')) as AuditHead;
}

function clientKey(): ClientKey {
  const spkiDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  return { spkiDer, keyHash: keyHashOfSpki(spkiDer) };
}

function sessionText(name: string, predecessor?: string): string {
  return [`name: ${name}`, 'version: "0.3"', ...(predecessor === undefined ? [] : [`predecessor: ${predecessor}`]), 'services:', '  - name: app', '    command: /bin/app', 'security:', '  attestation:', '    mode: none', ''].join('\n');
}

describe('GroupCommit', () => {
  it('shares one transaction among concurrent changes', async () => {
    const { db, audit } = await openFixture();
    const group = new GroupCommit(db, audit, silentLogger());
    const settled: number[] = [];

    const changes = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        db.writeGate.run(() => group.stage(entry(`s${index}`), () => db.putMeta(`test.${index}`, Buffer.from(String(index))), () => settled.push(index))),
      ),
    );
    const heads = await Promise.all(changes.map((change) => change.durable));

    assert.deepEqual(heads.map((head) => head.seq), Array.from({ length: 20 }, (_, index) => index + 1));
    assert.equal(db.getMeta('test.19')?.toString(), '19');
    assert.deepEqual(storedHead(db), heads.at(-1));
    assert.deepEqual(settled, Array.from({ length: 20 }, (_, index) => index));
    const { transactions, committed } = group.stats();
    assert.equal(committed, 20);
    assert.ok(transactions < committed, `20 changes took ${transactions} transactions`);
    assert.ok(audit.stats().batches < audit.stats().appended, 'the audit entries did not share an fsync');
  });

  it('rejects changes from a failed append', async () => {
    const { db, audit } = await openFixture();
    const failing = {
      append: (input: AuditEventInput) =>
        input.target?.session === 'bad' ? Promise.reject(new CasError('AUDIT_APPEND_FAILED', 'test: the audit write failed')) : audit.append(input),
    };
    const group = new GroupCommit(db, failing, silentLogger());
    const settled: string[] = [];

    const changes = await db.writeGate.run(() =>
      ['first', 'bad', 'after'].map((name) => group.stage(entry(name), () => db.putMeta(`test.${name}`, Buffer.from(name)), () => settled.push(name))),
    );
    const outcomes = await Promise.allSettled(changes.map((change) => change.durable));

    assert.equal(outcomes[0]!.status, 'fulfilled');
    for (const outcome of outcomes.slice(1)) {
      assert.equal(outcome.status, 'rejected');
      assert.equal(((outcome as PromiseRejectedResult).reason as CasError).code, 'AUDIT_APPEND_FAILED');
    }
    assert.equal(db.getMeta('test.first')?.toString(), 'first');
    assert.equal(db.getMeta('test.bad'), undefined);
    assert.equal(db.getMeta('test.after'), undefined);
    assert.equal(storedHead(db).seq, (outcomes[0] as PromiseFulfilledResult<AuditHead>).value.seq);
    assert.deepEqual(settled, ['first', 'bad', 'after']);
  });

  it('keeps changes before a failed write', async () => {
    const { db, audit } = await openFixture();
    const group = new GroupCommit(db, audit, silentLogger());

    const changes = await db.writeGate.run(() => [
      group.stage(entry('first'), () => db.putMeta('test.first', Buffer.from('1'))),
      group.stage(entry('broken'), () => {
        db.putMeta('test.broken', Buffer.from('2'));
        throw new Error('test: the write failed after a partial change');
      }),
      group.stage(entry('after'), () => db.putMeta('test.after', Buffer.from('3'))),
    ]);
    const outcomes = await Promise.allSettled(changes.map((change) => change.durable));

    assert.deepEqual(outcomes.map((outcome) => outcome.status), ['fulfilled', 'rejected', 'rejected']);
    assert.equal(((outcomes[1] as PromiseRejectedResult).reason as CasError).code, 'DATABASE_ERROR');
    assert.equal(db.getMeta('test.first')?.toString(), '1');
    assert.equal(db.getMeta('test.broken'), undefined, 'the failed change was partly committed');
    assert.equal(db.getMeta('test.after'), undefined);
    assert.equal(storedHead(db).seq, (outcomes[0] as PromiseFulfilledResult<AuditHead>).value.seq);
  });

  it('waits for a paused write gate', async () => {
    const { db, audit } = await openFixture();
    const group = new GroupCommit(db, audit, silentLogger());

    const change = await db.writeGate.run(() => group.stage(entry('paused'), () => db.putMeta('test.paused', Buffer.from('1'))));
    const release = await db.writeGate.pause();
    // Appends are written in order, so once this one is durable the staged change's entry is too.
    await audit.append(entry('marker'));
    for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
    const whilePaused = db.getMeta('test.paused');
    release();
    await change.durable;

    assert.equal(whilePaused, undefined, 'the group commit wrote while the write gate was paused');
    assert.equal(db.getMeta('test.paused')?.toString(), '1');
  });

  it('stays out of a snapshot taken meanwhile', async () => {
    const { db, audit, root, platform, casIdentity } = await openFixture();
    let release!: () => void;
    const appendsReleased = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The entry is written at once, but the flush receives it only after `release`.
    const holding = {
      append: async (input: AuditEventInput) => {
        const head = await audit.append(input);
        await appendsReleased;
        return head;
      },
    };
    const group = new GroupCommit(db, holding, silentLogger());
    const snapshotDir = join(root, 'snapshots');
    mkdirSync(snapshotDir);

    const change = await db.writeGate.run(() => group.stage(entry('snapshot'), () => db.putMeta('test.snapshot', Buffer.from('1'))));
    await audit.append(entry('marker'));
    // Released while the snapshot pauses writers, so the flush is ready to commit during the copy.
    const snapshot = await createSnapshot({
      db,
      identity: casIdentity,
      snapshotDir,
      auditHead: () => {
        release();
        return audit.head();
      },
    });
    await change.durable;
    const copy = CasDatabase.open({ dataDir: snapshot.path, platform });
    const copied = { counter: copy.changeCounter(), value: copy.getMeta('test.snapshot') };
    copy.close();

    assert.equal(copied.counter, snapshot.manifest.changeCounter, 'the copied change counter differs from the manifest');
    assert.equal(copied.value, undefined, 'the snapshot holds a change committed while writers were paused');
    assert.equal(db.getMeta('test.snapshot')?.toString(), '1');
  });

  it('throws outside the write gate', async () => {
    const { db, audit } = await openFixture();
    const group = new GroupCommit(db, audit, silentLogger());
    assert.throws(() => group.stage(entry('outside'), () => undefined), (error: unknown) => error instanceof CasError && error.code === 'INTERNAL');
  });

  it('throws when created inside a writer', async () => {
    const { db, audit } = await openFixture();
    await assert.rejects(
      db.writeGate.run(() => new GroupCommit(db, audit, silentLogger())),
      (error: unknown) => error instanceof CasError && error.code === 'INTERNAL',
    );
  });
});

describe('SessionService with group commit', () => {
  async function openSessions(): Promise<{ db: CasDatabase; sessions: SessionService }> {
    const { db, audit } = await openFixture();
    return { db, sessions: new SessionService(db, createCommit(db, audit), new GroupCommit(db, audit, silentLogger()), silentLogger()) };
  }

  it('creates one of two concurrent sessions with one name', async () => {
    const { db, sessions } = await openSessions();
    const client = clientKey();

    const outcomes = await Promise.allSettled([sessions.create(sessionText('twin'), client), sessions.create(sessionText('twin'), client)]);

    assert.deepEqual(outcomes.map((outcome) => outcome.status).sort(), ['fulfilled', 'rejected']);
    const rejected = outcomes.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult;
    assert.equal((rejected.reason as CasError).code, 'SESSION_EXISTS');
    assert.deepEqual(db.listSessionNames(), ['twin']);
  });

  it('checks changes against staged ones', async () => {
    const { db, audit } = await openFixture();
    // Appends wait until `release`, so the changes below stay staged while the next ones are checked.
    let release!: () => void;
    const appendsReleased = new Promise<void>((resolve) => {
      release = resolve;
    });
    const appended: string[] = [];
    const holding = {
      append: async (input: AuditEventInput) => {
        appended.push(`${input.event} ${input.target?.session}`);
        await appendsReleased;
        return audit.append(input);
      },
    };
    const group = new GroupCommit(db, holding, silentLogger());
    const sessions = new SessionService(db, createCommit(db, audit), group, silentLogger());
    const client = clientKey();
    const policy = 'access_policy:\n  create_sessions: [CREATOR]\n';
    const untilAppended = async (count: number) => {
      while (appended.length < count) await new Promise((resolve) => setImmediate(resolve));
    };

    const parent = sessions.create(`${sessionText('parent')}${policy}`, client);
    await untilAppended(1);
    const child = sessions.create(sessionText('parent/child'), client);
    await untilAppended(2);
    const parentHash = sessionHash(parseSession(`${sessionText('parent')}${policy}`));
    const update = sessions.update('parent', `${sessionText('parent', parentHash)}${policy}`, client);
    await untilAppended(3);
    const deleteParent = assert.rejects(sessions.delete('parent', client), (error: unknown) => error instanceof CasError && error.code === 'SESSION_CONFLICT');
    await deleteParent;
    assert.deepEqual(db.listSessionNames(), [], 'a staged change was committed before its audit entry');

    release();
    assert.equal((await parent).hash, parentHash);
    await child;
    await update;
    assert.deepEqual(db.listSessionNames(), ['parent', 'parent/child']);
    assert.equal(db.getSession('parent')?.predecessor, parentHash);
    assert.deepEqual(appended, ['session.created parent', 'session.created parent/child', 'session.updated parent']);
  });

  it('rejects an update staged on a stale predecessor', async () => {
    const { db, sessions } = await openSessions();
    const client = clientKey();
    const { hash } = await sessions.create(sessionText('app'), client);

    const first = sessions.update('app', `${sessionText('app', hash)}# first\n`, client);
    const second = assert.rejects(sessions.update('app', `${sessionText('app', hash)}# second\n`, client), (error: unknown) => error instanceof CasError && error.code === 'SESSION_CONFLICT');

    await first;
    await second;
    assert.match(db.getSession('app')!.text, /# first/);
  });

  /**
   * Opens a SessionService whose audit appends wait until `release`, so changes stay staged while later ones
   * are checked. Appends of the entries that `fails` selects reject after the release.
   */
  async function openHeldSessions(fails: (input: AuditEventInput) => boolean = () => false) {
    const { db, audit } = await openFixture();
    let release!: () => void;
    const appendsReleased = new Promise<void>((resolve) => {
      release = resolve;
    });
    let appended = 0;
    const holding = {
      append: async (input: AuditEventInput) => {
        appended++;
        await appendsReleased;
        if (fails(input)) throw new CasError('AUDIT_APPEND_FAILED', 'test: the audit write failed');
        return audit.append(input);
      },
    };
    const sessions = new SessionService(db, createCommit(db, audit), new GroupCommit(db, holding, silentLogger()), silentLogger());
    const untilAppended = async (count: number) => {
      while (appended < count) await new Promise((resolve) => setImmediate(resolve));
    };
    return { db, sessions, release, untilAppended };
  }

  const hasCode = (code: string) => (error: unknown) => error instanceof CasError && error.code === code;

  it('re-creates a name deleted in one batch', async () => {
    const { db, sessions, release, untilAppended } = await openHeldSessions();
    const client = clientKey();
    const first = sessions.create(sessionText('app'), client);
    await untilAppended(1);

    const deleted = sessions.delete('app', client);
    await untilAppended(2);
    const second = sessions.create(`${sessionText('app')}# second\n`, client);
    await untilAppended(3);
    const third = assert.rejects(sessions.create(sessionText('app'), client), hasCode('SESSION_EXISTS'));
    release();
    await first;
    await deleted;
    await second;
    await third;

    assert.deepEqual(db.listSessionNames(), ['app']);
    assert.match(db.getSession('app')!.text, /# second/);
    await assert.rejects(sessions.create(sessionText('app'), client), hasCode('SESSION_EXISTS'));
  });

  it('rejects a child of a parent deleted in one batch', async () => {
    const { db, sessions, release, untilAppended } = await openHeldSessions();
    const client = clientKey();
    const policy = 'access_policy:\n  create_sessions: [CREATOR]\n';
    const parent = sessions.create(`${sessionText('parent')}${policy}`, client);
    await untilAppended(1);

    const deleted = sessions.delete('parent', client);
    await untilAppended(2);
    await assert.rejects(sessions.create(sessionText('parent/child'), client), hasCode('SESSION_NOT_FOUND'));
    release();
    await parent;
    await deleted;

    assert.deepEqual(db.listSessionNames(), []);
  });

  it('rejects an import withdrawn in one batch', async () => {
    const { db, sessions, release, untilAppended } = await openHeldSessions();
    const client = clientKey();
    const vaultText = 'name: vault\nversion: "0.3"\nsecrets:\n  - name: key\n    kind: ascii\n';
    const exporter = sessions.create(`${vaultText}    export:\n      - session: app\n`, client);
    await untilAppended(1);

    const exportedHash = sessionHash(parseSession(`${vaultText}    export:\n      - session: app\n`));
    const withdrawn = sessions.update('vault', `predecessor: ${exportedHash}\n${vaultText}`, client);
    await untilAppended(2);
    const importer = 'name: app\nversion: "0.3"\nsecrets:\n  - name: key\n    import:\n      session: vault\n      secret: key\n';
    await assert.rejects(sessions.create(importer, client), hasCode('SECRET_REFERENCE_INVALID'));
    release();
    await exporter;
    await withdrawn;

    assert.deepEqual(db.listSessionNames(), ['vault']);
  });

  it('rejects a child of a parent whose append failed', async () => {
    const { db, sessions, release, untilAppended } = await openHeldSessions((input) => input.target?.session === 'parent');
    const client = clientKey();
    const policy = 'access_policy:\n  create_sessions: [CREATOR]\n';
    const parent = assert.rejects(sessions.create(`${sessionText('parent')}${policy}`, client), hasCode('AUDIT_APPEND_FAILED'));
    await untilAppended(1);

    const child = assert.rejects(sessions.create(sessionText('parent/child'), client), hasCode('AUDIT_APPEND_FAILED'));
    await untilAppended(2);
    release();
    await parent;
    await child;

    assert.deepEqual(db.listSessionNames(), [], 'a change staged on a failed one was committed');
    await sessions.create(sessionText('other'), client);
    assert.deepEqual(db.listSessionNames(), ['other']);
  });

  it('frees a name whose create failed', async () => {
    let failures = 1;
    const { db, sessions, release } = await openHeldSessions(() => failures-- > 0);
    const client = clientKey();
    release();

    await assert.rejects(sessions.create(sessionText('app'), client), hasCode('AUDIT_APPEND_FAILED'));
    await sessions.create(sessionText('app'), client);

    assert.deepEqual(db.listSessionNames(), ['app']);
  });

  it('keeps a newer head stored meanwhile', async () => {
    const { db, audit } = await openFixture();
    const group = new GroupCommit(db, audit, silentLogger());
    const commit = createCommit(db, audit);
    // Each writer takes the gate before the flush does, so it stores a head newer than the staged change's.
    const writers: Array<[string, () => Promise<unknown>]> = [
      ['legacy-commit', () => commit(entry('legacy'), () => db.putMeta('test.legacy', Buffer.from('1')))],
      ['release-head', async () => storeAuditHead(db, await audit.append(entry('release')))],
    ];

    for (const [writer, write] of writers) {
      const change = await db.writeGate.run(() => group.stage(entry(writer), () => db.putMeta(`test.${writer}`, Buffer.from('1'))));
      await write();
      const staged = await change.durable;

      assert.deepEqual(storedHead(db), audit.head(), `the head moved back to ${staged.seq} after ${writer}`);
    }
  });
});
