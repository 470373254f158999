import { Worker } from 'node:worker_threads';
import { SOURCE_CLOSED, SOURCE_OPEN, SOURCE_READING, type HashResponse, type HashWorkerData, type Patch } from './hash-protocol.js';

export type { Patch } from './hash-protocol.js';

/** Size and SHA-256 (lower-case hex) of a file. */
export interface FileDigest {
  size: number;
  sha256: string;
}

/**
 * Read size of the hashing worker. On the 2-core benchmark VM, hashing 1 GiB from the page cache took 765 ms
 * with 1 MiB reads and 790 to 800 ms with 4 or 8 MiB reads (OpenSSL alone: about 625 ms).
 */
const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** `Atomics.waitAsync` (Node.js 16 and later), which TypeScript's lib declares only from ES2024 on. */
const waitAsync = (Atomics as unknown as { waitAsync: (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: unknown } }).waitAsync;

/** How long `closeSource` waits for a source read before it checks again whether the worker has exited. */
const CLOSE_POLL_MS = 100;

/**
 * Computes the SHA-256 of a file copy in a worker thread, starting while the copy is still being written.
 *
 * The copier cannot report progress when the kernel copies the file (`copyFile`), so the worker hashes the
 * source instead, but only while the source is frozen, that is while the read-only window is open. When the
 * window closes it continues from the same offset in the finished copy. The caller's contract:
 *
 * 1. `hashSource(path, size, patches)` once the source is frozen and before the copy, with every byte range
 *    the copier then changes in the copy (`patches`), so that the hash is of the copy's bytes.
 * 2. `closeSource()` before the source may change again. It returns once the worker reads no more of it.
 * 3. `digestCopy(path)` once the copy and its patches are written. The worker re-reads the patched ranges
 *    from the copy and checks the copy's size before it returns the digest.
 * 4. `close()` on every path, to stop the worker.
 *
 * Skipping step 1 hashes the whole copy in step 3. Memory: one read buffer of `chunkBytes` (default 1 MiB)
 * plus the worker's own V8 isolate, a few MiB.
 */
export class CopyHasher {
  private readonly worker: Worker;
  private readonly state: Int32Array;
  private readonly online: Promise<void>;
  private readonly digest: Promise<FileDigest>;
  private exited = false;
  private resolveSourceHashed: (bytes: number) => void = () => undefined;

  private constructor(worker: Worker, state: Int32Array) {
    this.worker = worker;
    this.state = state;
    let resolveOnline: () => void = () => undefined;
    this.online = new Promise<void>((resolve) => (resolveOnline = resolve));
    this.digest = new Promise<FileDigest>((resolve, reject) => {
      worker.on('message', (response: HashResponse) => {
        if (response.type === 'ready') resolveOnline();
        else if (response.type === 'source-hashed') this.resolveSourceHashed(response.bytes);
        else if (response.type === 'done') resolve({ size: response.size, sha256: response.sha256 });
        else reject(Object.assign(new Error(`Hashing the database copy failed: ${response.message}`), response.code === undefined ? {} : { code: response.code }));
      });
      worker.once('error', (error) => reject(new Error(`The hashing worker failed: ${error.message}`, { cause: error })));
      worker.once('exit', (code) => {
        this.exited = true;
        reject(new Error(`The hashing worker exited with code ${code} before it returned a digest`));
      });
    });
    // A snapshot that fails before `digestCopy` never awaits the digest; its rejection is not an unhandled one.
    this.digest.catch(() => undefined);
  }

  /**
   * Resolves once the worker runs, and rejects when it failed to start. Awaited before the read-only window,
   * because starting a worker (a V8 isolate, tens of milliseconds of CPU) would otherwise lengthen it.
   */
  ready(): Promise<void> {
    return Promise.race([this.online, this.digest.then(() => undefined)]);
  }

  /** Starts the worker. `workerUrl` replaces the worker module, which tests use to make hashing fail. */
  static start(options: { chunkBytes?: number; workerUrl?: URL } = {}): CopyHasher {
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new RangeError(`chunkBytes must be a positive integer, got ${chunkBytes}`);
    const state = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const workerData: HashWorkerData = { state, chunkBytes };
    const worker = new Worker(options.workerUrl ?? new URL('./hash-worker.js', import.meta.url), { workerData });
    return new CopyHasher(worker, new Int32Array(state));
  }

  /**
   * Lets the worker hash `size` bytes of `path` until `closeSource`, with `patches` applied. Returns the number
   * of bytes it hashed from `path`, once it has stopped reading it; the caller need not await it.
   */
  hashSource(path: string, size: number, patches: Patch[]): Promise<number> {
    const sourceHashed = new Promise<number>((resolve, reject) => {
      this.resolveSourceHashed = resolve;
      this.digest.catch(reject);
    });
    sourceHashed.catch(() => undefined);
    this.worker.postMessage({ type: 'source', path, size, patches });
    return sourceHashed;
  }

  /**
   * Forbids further reads of the source and waits for a read in progress, at most one chunk. Safe to call more
   * than once and after the worker has exited.
   */
  async closeSource(): Promise<void> {
    for (;;) {
      const previous = Atomics.compareExchange(this.state, 0, SOURCE_OPEN, SOURCE_CLOSED);
      if (previous !== SOURCE_READING) return;
      if (this.exited) {
        // A stopped thread reads nothing more, even if it stopped during a read.
        Atomics.store(this.state, 0, SOURCE_CLOSED);
        return;
      }
      const wait = waitAsync(this.state, 0, SOURCE_READING, CLOSE_POLL_MS);
      if (wait.async) await wait.value;
    }
  }

  /** Hashes the rest of the finished copy at `path` and returns its size and digest. Call after `closeSource`. */
  digestCopy(path: string): Promise<FileDigest> {
    if (!this.exited) this.worker.postMessage({ type: 'copy', path });
    return this.digest;
  }

  /** Stops the worker. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
