import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { LeaseElector, leaseTiming, type LeaseHolder } from './lease.js';
import { LockFileLeaseStore } from './lockfile-lease.js';

function newStore(): LockFileLeaseStore {
  return new LockFileLeaseStore(join(mkdtempSync(join(tmpdir(), 'cas-lease-')), 'cas.lease'));
}

/** A clock that moves only when the test says so. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let value = 1_000;
  return { now: () => value, advance: (ms) => (value += ms) };
}

const DURATION_MS = 2_000;

function elector(store: LockFileLeaseStore, id: string, now: () => number, extra: Partial<ConstructorParameters<typeof LeaseElector>[0]> = {}): LeaseElector {
  const self: LeaseHolder = { id, url: `https://127.0.0.1/${id}` };
  return new LeaseElector({ store, self, timing: leaseTiming(DURATION_MS), now, ...extra });
}

describe('LockFileLeaseStore', () => {
  it('creates the first generation once', async () => {
    const store = newStore();
    assert.equal(await store.read(), undefined);
    const next = { holder: { id: 'a' }, token: 1, durationMs: DURATION_MS, renewedAt: new Date().toISOString() };
    const written = await store.compareAndSwap(undefined, next);
    assert.equal(written?.version, '1');
    assert.equal(await store.compareAndSwap(undefined, { ...next, holder: { id: 'b' } }), undefined);
    assert.deepEqual((await store.read())?.holder, { id: 'a' });
  });

  it('lets exactly one of concurrent writers win', async () => {
    const store = newStore();
    const first = await store.compareAndSwap(undefined, { holder: { id: 'a' }, token: 1, durationMs: DURATION_MS, renewedAt: '' });
    const attempts = await Promise.all(
      Array.from({ length: 12 }, (_, i) => store.compareAndSwap(first, { holder: { id: `w${i}` }, token: 2, durationMs: DURATION_MS, renewedAt: '' })),
    );
    const winners = attempts.filter((result) => result !== undefined);
    assert.equal(winners.length, 1);
    assert.deepEqual((await store.read())?.holder, winners[0]!.holder);
  });

  it('keeps only recent generations', async () => {
    const store = newStore();
    let current = await store.compareAndSwap(undefined, { holder: { id: 'a' }, token: 1, durationMs: DURATION_MS, renewedAt: '' });
    for (let i = 0; i < 20; i++) current = await store.compareAndSwap(current, { holder: { id: 'a' }, token: 1, durationMs: DURATION_MS, renewedAt: '' });
    assert.equal(current?.version, '21');
    const files = readdirSync(store.directory).filter((name) => name.endsWith('.json'));
    assert.ok(files.length <= 8, `${files.length} generation files remain`);
    assert.equal((await store.read())?.version, '21');
  });

  it('rejects a damaged lease file', async () => {
    const store = newStore();
    await store.compareAndSwap(undefined, { holder: { id: 'a' }, token: 1, durationMs: DURATION_MS, renewedAt: '' });
    writeFileSync(join(store.directory, '000000000002.json'), '{"holder":');
    await assert.rejects(store.read(), (error: unknown) => isCasError(error, 'UNAVAILABLE') && /000000000002\.json/.test(error.message));
  });
});

describe('LeaseElector', () => {
  it('takes a free lease with token 1', async () => {
    const clock = manualClock();
    const a = elector(newStore(), 'a', clock.now);
    assert.equal(await a.tryAcquire(), true);
    assert.equal(a.token, 1);
    assert.equal(a.isValid(), true);
  });

  it('waits a whole lease period without renewals', async () => {
    const store = newStore();
    const clock = manualClock();
    const a = elector(store, 'a', clock.now);
    const b = elector(store, 'b', clock.now);
    await a.tryAcquire();

    assert.equal(await b.tryAcquire(), false, 'first observation');
    clock.advance(DURATION_MS - 1);
    assert.equal(await b.tryAcquire(), false, 'one millisecond before expiry');
    clock.advance(1);
    assert.equal(await b.tryAcquire(), true, 'unchanged for a whole lease period');
    assert.equal(b.token, 2);
    assert.equal(a.isValid(), false, 'the old holder lost validity before the standby could take over');
  });

  it('restarts the wait after each renewal', async () => {
    const store = newStore();
    const clock = manualClock();
    const a = elector(store, 'a', clock.now);
    const b = elector(store, 'b', clock.now);
    await a.tryAcquire();
    await b.tryAcquire();
    for (let i = 0; i < 5; i++) {
      clock.advance(DURATION_MS / 2);
      assert.equal(await a.renew(), true);
      assert.equal(await b.tryAcquire(), false, `renewal ${i} keeps the lease`);
    }
    clock.advance(DURATION_MS);
    assert.equal(await b.tryAcquire(), true);
  });

  it('fences a paused holder', async () => {
    const store = newStore();
    const clock = manualClock();
    const a = elector(store, 'a', clock.now);
    const b = elector(store, 'b', clock.now);
    await a.tryAcquire();
    await b.tryAcquire();

    // `a` is paused: no renewal, while the clock runs on.
    clock.advance(leaseTiming(DURATION_MS).validForMs);
    assert.equal(a.isValid(), false);
    assert.throws(() => a.assertValid(), (error: unknown) => isCasError(error, 'NOT_PRIMARY'));
    clock.advance(DURATION_MS);
    assert.equal(await b.tryAcquire(), true);

    // `a` resumes: its renewal fails, and the error names the new primary.
    assert.equal(await a.renew(), false);
    assert.equal(a.token, undefined);
    assert.throws(
      () => a.assertValid(),
      (error: unknown) => isCasError(error, 'NOT_PRIMARY') && error.message.includes('the primary is b at https://127.0.0.1/b'),
    );
  });

  it('renews a lapsed lease nobody took', async () => {
    const clock = manualClock();
    const a = elector(newStore(), 'a', clock.now);
    await a.tryAcquire();
    clock.advance(DURATION_MS * 10);
    assert.equal(a.isValid(), false);
    assert.equal(await a.renew(), true);
    assert.equal(a.isValid(), true);
    assert.equal(a.token, 1);
  });

  it('hands over at once on release', async () => {
    const store = newStore();
    const clock = manualClock();
    const a = elector(store, 'a', clock.now);
    const b = elector(store, 'b', clock.now);
    await a.tryAcquire();
    assert.equal(await b.tryAcquire(), false);
    await a.release();
    assert.equal(a.isValid(), false);
    assert.equal(await b.tryAcquire(), true);
    assert.equal(b.token, 2);
  });

  it('takes over from a holder known to be gone', async () => {
    const store = newStore();
    const clock = manualClock();
    const a = elector(store, 'a', clock.now);
    const b = elector(store, 'b', clock.now, { isHolderGone: (holder) => holder.id === 'a' });
    await a.tryAcquire();
    assert.equal(await b.tryAcquire(), true);
    assert.equal(b.token, 2);
  });

  it('names no primary while the lease is free', () => {
    const a = elector(newStore(), 'a', manualClock().now);
    assert.throws(() => a.assertValid(), (error: unknown) => isCasError(error, 'NOT_PRIMARY') && /no primary holds the lease/.test(error.message));
  });
});
