import { AsyncLocalStorage } from 'node:async_hooks';
import { CasError } from '../errors/cas-error.js';

/**
 * Serialises writers and lets a snapshot stop them for a while. Every change to the database or the key store
 * runs inside `run`. Writers run one at a time in arrival order, so a writer may read, decide and write
 * without another writer interleaving. `pause` waits for the running writer to finish and keeps the gate
 * closed until its release function is called. Meanwhile writers queue (they wait, they do not fail) and
 * reads continue, because reads never pass through the gate.
 */
export class WriteGate {
  private tail: Promise<void> = Promise.resolve();
  private readonly writerContext = new AsyncLocalStorage<true>();
  private pauseCount = 0;
  private waitingCount = 0;

  /** Runs `fn` as the only writer. A call from inside a running writer runs `fn` at once (no deadlock). */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.isInsideWriter()) return fn();
    const release = await this.acquire();
    try {
      return await this.writerContext.run(true, fn);
    } finally {
      release();
    }
  }

  /**
   * Waits until no writer runs, then blocks writers until the returned function is called. The returned
   * function may be called more than once; only the first call releases.
   */
  async pause(): Promise<() => void> {
    if (this.isInsideWriter()) {
      throw new CasError('INTERNAL', 'WriteGate.pause() was called from inside a writer, which would wait for itself');
    }
    const release = await this.acquire();
    this.pauseCount += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pauseCount -= 1;
      release();
    };
  }

  /** True while a pause keeps the gate closed. */
  get paused(): boolean {
    return this.pauseCount > 0;
  }

  /** Number of writers and pauses waiting for the gate. */
  get waiting(): number {
    return this.waitingCount;
  }

  isInsideWriter(): boolean {
    return this.writerContext.getStore() === true;
  }

  /** Throws INTERNAL unless the caller runs inside `run`: a write outside the gate could land in a snapshot. */
  assertInsideWriter(operation: string): void {
    if (!this.isInsideWriter()) {
      throw new CasError('INTERNAL', `${operation} must run inside writeGate.run(), so that snapshots see a consistent state`);
    }
  }

  private async acquire(): Promise<() => void> {
    const previous = this.tail;
    let release!: () => void;
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.tail = previous.then(() => current);
    this.waitingCount += 1;
    try {
      await previous;
    } finally {
      this.waitingCount -= 1;
    }
    return release;
  }
}
