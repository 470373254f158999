import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { HTTP_STATUS } from '../errors/http-status.js';
import { silentLogger } from '../logging/logger.js';
import { CasDatabase, openPlatform } from '../store/index.js';
import { createSelfSignedCertificate } from '../tls/certificates.js';
import { createCommit, openServerAudit, storeAuditHead } from './audit-setup.js';
import { tempDir } from './testing/cas-process.js';

const KEY_HASH = 'c'.repeat(64);

describe('createCommit', () => {
  it('commits nothing when the append fails', async () => {
    const root = tempDir('commit');
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'platform') });
    const db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    const casIdentity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    const { audit } = await openServerAudit({ db, casIdentity, path: join(root, 'audit', 'cas_audit.log'), logger: silentLogger() });
    const commit = createCommit(db, audit);
    const entry = { event: 'session.created' as const, actor: { kind: 'client' as const, keyHash: KEY_HASH }, target: { session: 'a' }, outcome: 'success' as const, details: {} };

    try {
      const { head } = await commit(entry, () => db.putMeta('test.first', Buffer.from('1')));
      assert.equal(head.seq, 1);
      assert.deepEqual(JSON.parse(db.getMeta('audit.head')!.toString('utf8')), head);
      assert.equal(db.getMeta('test.first')?.toString(), '1');

      await audit.close();
      let wrote = false;
      await assert.rejects(
        commit(entry, () => {
          wrote = true;
          db.putMeta('test.second', Buffer.from('2'));
        }),
        (error: unknown) => error instanceof CasError && error.code === 'AUDIT_APPEND_FAILED',
      );
      assert.equal(wrote, false);
      assert.equal(db.getMeta('test.second'), undefined);
      assert.deepEqual(JSON.parse(db.getMeta('audit.head')!.toString('utf8')), head);
      assert.equal(HTTP_STATUS.AUDIT_APPEND_FAILED, 503);
    } finally {
      await audit.close();
      db.close();
    }
  });
});

describe('storeAuditHead', () => {
  const head = (seq: number) => ({ seq, hash: seq.toString(16).padStart(64, '0') });
  const storedHead = (db: CasDatabase) => JSON.parse(db.getMeta('audit.head')!.toString('utf8')) as { seq: number; hash: string };

  it('shares one commit among concurrent stores', async () => {
    const root = tempDir('head-store');
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'platform') });
    const db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    try {
      await storeAuditHead(db, head(5));
      assert.equal(storedHead(db).seq, 5);

      const before = db.changeCounter();
      await Promise.all(Array.from({ length: 35 }, (_, index) => storeAuditHead(db, head(6 + index))));
      assert.deepEqual(storedHead(db), head(40));
      const commits = db.changeCounter() - before;
      assert.ok(commits >= 1 && commits <= 2, `35 concurrent stores took ${commits} commits`);
    } finally {
      db.close();
    }
  });

  it('never moves the head backwards', async () => {
    const root = tempDir('head-order');
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'platform') });
    const db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    try {
      await storeAuditHead(db, head(9));
      const before = db.changeCounter();
      await storeAuditHead(db, head(3));
      assert.deepEqual(storedHead(db), head(9));
      assert.equal(db.changeCounter(), before);
      await storeAuditHead(db, head(10));
      assert.deepEqual(storedHead(db), head(10));
    } finally {
      db.close();
    }
  });
});
