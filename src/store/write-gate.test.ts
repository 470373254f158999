import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isCasError } from '../errors/cas-error.js';
import { WriteGate } from './write-gate.js';

/** Lets queued promise callbacks and I/O callbacks run a few times. */
async function settle(turns = 5): Promise<void> {
  for (let turn = 0; turn < turns; turn += 1) await nextTurn();
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('WriteGate', () => {
  it('runs writers one at a time in arrival order', async () => {
    const gate = new WriteGate();
    const events: string[] = [];
    const first = deferred();
    const a = gate.run(async () => {
      events.push('a start');
      await first.promise;
      events.push('a end');
    });
    const b = gate.run(() => {
      events.push('b');
    });
    await settle();
    assert.deepEqual(events, ['a start']);
    first.resolve();
    await Promise.all([a, b]);
    assert.deepEqual(events, ['a start', 'a end', 'b']);
  });

  it('makes writers wait while paused and resumes them on release', async () => {
    const gate = new WriteGate();
    const release = await gate.pause();
    assert.equal(gate.paused, true);
    let wrote = false;
    const writer = gate.run(() => {
      wrote = true;
      return 'done';
    });
    await settle();
    assert.equal(wrote, false);
    assert.equal(gate.waiting, 1);
    release();
    assert.equal(await writer, 'done');
    assert.equal(wrote, true);
    assert.equal(gate.paused, false);
  });

  it('pause waits for the running writer to finish', async () => {
    const gate = new WriteGate();
    const writerMayFinish = deferred();
    let writerDone = false;
    const writer = gate.run(async () => {
      await writerMayFinish.promise;
      writerDone = true;
    });
    let paused = false;
    const pausing = gate.pause().then((release) => {
      paused = true;
      return release;
    });
    await settle();
    assert.equal(paused, false);
    writerMayFinish.resolve();
    const release = await pausing;
    assert.equal(writerDone, true);
    release();
    await writer;
  });

  it('ignores a second call of the release function', async () => {
    const gate = new WriteGate();
    const releaseFirst = await gate.pause();
    releaseFirst();
    const releaseSecond = await gate.pause();
    releaseFirst();
    let wrote = false;
    const writer = gate.run(() => {
      wrote = true;
    });
    await settle();
    assert.equal(wrote, false);
    releaseSecond();
    await writer;
    assert.equal(wrote, true);
  });

  it('runs a nested writer at once', async () => {
    const gate = new WriteGate();
    const result = await gate.run(async () => gate.run(async () => 42));
    assert.equal(result, 42);
  });

  it('rejects a pause from inside a writer', async () => {
    const gate = new WriteGate();
    await assert.rejects(gate.run(() => gate.pause()), (error: unknown) => isCasError(error, 'INTERNAL'));
  });

  it('releases the gate when a writer throws', async () => {
    const gate = new WriteGate();
    await assert.rejects(gate.run(() => {
      throw new Error('writer failed');
    }), /writer failed/);
    assert.equal(await gate.run(() => 'next'), 'next');
  });

  it('knows whether the caller runs inside a writer', async () => {
    const gate = new WriteGate();
    assert.equal(gate.isInsideWriter(), false);
    assert.throws(() => gate.assertInsideWriter('putSession'), /putSession must run inside writeGate.run/);
    await gate.run(async () => {
      await settle(1);
      assert.equal(gate.isInsideWriter(), true);
      gate.assertInsideWriter('putSession');
    });
  });
});
