import { fork, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { CopierRequest, CopierResponse, Patch } from './copier-protocol.js';

export type { Patch } from './copier-protocol.js';

/** Size and SHA-256 (lower-case hex) of a file. */
export interface FileDigest {
  size: number;
  sha256: string;
}

/** Read size of the copy process, which allocates one buffer of this size. */
const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** Bytes of the child's stderr kept for the error message when it exits unexpectedly. */
const STDERR_TAIL_BYTES = 2048;

/**
 * Time limits after which a silent child is killed, so that a hung copy cannot keep the writers paused or the
 * snapshot scheduler waiting forever. A request may take `baseMs` plus its bytes at `minBytesPerSecond`. The
 * defaults are generous guesses: on the 2-core benchmark VM a 1 GiB copy took about 0.3 s and its hash about
 * 0.8 s, against a limit of about 160 s here.
 */
export interface CopierTimeouts {
  startMs: number;
  baseMs: number;
  minBytesPerSecond: number;
}

const DEFAULT_TIMEOUTS: CopierTimeouts = { startMs: 30_000, baseMs: 30_000, minBytesPerSecond: 8 * 1024 * 1024 };

/**
 * Copies cas.db and computes the SHA-256 of the copy in a child process (copier-process.ts), so that the CAS
 * process never opens cas.db with node:fs. Closing such a descriptor would release the POSIX lock that SQLite
 * holds on cas.db in EXCLUSIVE locking mode, because those locks belong to the process, not the descriptor.
 *
 * The child hashes the source while the kernel copies it, which is safe only while the source is frozen, that
 * is while the read-only window is open. It then continues from the same offset in the finished copy. The
 * caller's contract:
 *
 * 1. `ready()` before the read-only window, so that the child's start-up is not part of it.
 * 2. `copy(source, destination, size, patches)` once the source is frozen, with every byte range the caller
 *    then changes in the copy (`patches`), so that the hash is of the copy's bytes. It resolves once the copy
 *    is complete and the child has closed the source.
 * 3. `closeSource()` before the source may change again, also on failure paths.
 * 4. `digestCopy(path)` once the copy and its patches are written. The child re-reads the patched ranges
 *    from the copy and checks the copy's size before it returns the digest.
 * 5. `close()` on every path, to stop the child.
 *
 * Skipping step 2 hashes the whole file in step 4. Memory: one read buffer of `chunkBytes` (default 1 MiB)
 * plus the child's Node.js runtime, about 40 MiB resident.
 */
export class DatabaseCopier {
  private readonly child: ChildProcess;
  private readonly online: Promise<void>;
  private readonly exited: Promise<void>;
  private resolveOnline: () => void = () => undefined;
  private rejectOnline: (error: Error) => void = () => undefined;
  private pending: { resolve: (response: CopierResponse) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;
  private hasExited = false;
  /** True from the `copy` request until the child responds or exits, because until then it may read the source. */
  private readingSource = false;
  private stderrTail = '';
  private deadline: NodeJS.Timeout | undefined;

  private constructor(
    child: ChildProcess,
    private readonly timeouts: CopierTimeouts,
  ) {
    this.child = child;
    this.startDeadline('start', timeouts.startMs);
    this.online = new Promise<void>((resolve, reject) => {
      this.resolveOnline = resolve;
      this.rejectOnline = reject;
    });
    // A copier that fails before anyone awaits `ready()` must not raise an unhandled rejection.
    this.online.catch(() => undefined);
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.hasExited = true;
        this.readingSource = false;
        const exitReason = signal === null ? `with code ${code}` : `on signal ${signal}`;
        const stderr = this.stderrTail.trim();
        this.fail(new Error(`The snapshot copy process exited ${exitReason} before it responded${stderr === '' ? '' : `: ${stderr}`}`));
        resolve();
      });
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_BYTES);
    });
    child.on('message', (response: CopierResponse) => this.receive(response));
    // A child that closed its IPC channel can send no response, so it is killed. Its 'exit' then rejects the
    // pending request, which would otherwise wait forever while the writers are paused.
    child.once('disconnect', () => {
      if (!this.hasExited) child.kill('SIGKILL');
    });
    child.once('error', (error) => this.fail(new Error(`The snapshot copy process failed: ${error.message}`, { cause: error })));
  }

  /** Starts the child. `modulePath` replaces its module, which tests use to make copying or hashing fail. */
  static start(options: { chunkBytes?: number; modulePath?: string; timeouts?: Partial<CopierTimeouts> } = {}): DatabaseCopier {
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new RangeError(`chunkBytes must be a positive integer, got ${chunkBytes}`);
    const modulePath = options.modulePath ?? fileURLToPath(new URL('./copier-process.js', import.meta.url));
    // No inherited execArgv: flags such as --cpu-prof or --test of the CAS process do not apply to the child.
    // No inherited environment either: it may hold secrets such as CAS_DCAP_API_KEY, which copying never needs.
    const child = fork(modulePath, [String(chunkBytes)], { execArgv: [], env: {}, serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    return new DatabaseCopier(child, { ...DEFAULT_TIMEOUTS, ...options.timeouts });
  }

  /**
   * Resolves once the child runs, and rejects when it failed to start. Awaited before the read-only window,
   * because starting Node.js (tens of milliseconds of CPU) would otherwise lengthen it.
   */
  ready(): Promise<void> {
    return this.online;
  }

  /**
   * Copies `source` (of `size` bytes) to the new file `destination` and hashes the source meanwhile, with
   * `patches` applied. Resolves with the number of bytes hashed from the source once the copy is complete and
   * the child has closed the source. On rejection the child reads no more of the source either.
   */
  async copy(source: string, destination: string, size: number, patches: Patch[]): Promise<number> {
    this.readingSource = true;
    const response = await this.request({ type: 'copy', source, destination, size, patches }, size);
    if (response.type !== 'copied') throw new Error(`The snapshot copy process sent a ${response.type} response to a copy request`);
    return response.hashedBytes;
  }

  /**
   * Returns once the child reads no more of the source: at once when it has responded to the `copy` request
   * or never received one, else after killing it. Safe to call more than once and after the child has exited.
   */
  async closeSource(): Promise<void> {
    if (!this.readingSource || this.hasExited || this.child.pid === undefined) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Hashes the rest of the finished copy at `path` and returns its size and digest. Call after `closeSource`. */
  async digestCopy(path: string): Promise<FileDigest> {
    if (this.readingSource) throw new Error('digestCopy was called before the copy was complete');
    const response = await this.request({ type: 'digest', path }, (await stat(path).catch(() => ({ size: 0 }))).size);
    if (response.type !== 'digest') throw new Error(`The snapshot copy process sent a ${response.type} response to a digest request`);
    return { size: response.size, sha256: response.sha256 };
  }

  /** Stops the child and waits for its exit. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.hasExited || this.child.pid === undefined) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Sends `message`; the child is killed unless it responds within the time limit for `bytes`. */
  private request(message: CopierRequest, bytes: number): Promise<CopierResponse> {
    if (this.failure !== undefined) {
      this.readingSource = false;
      return Promise.reject(this.failure);
    }
    if (this.pending !== undefined) return Promise.reject(new Error(`A ${message.type} request was sent before the response to the previous one`));
    return new Promise<CopierResponse>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.startDeadline(message.type, this.timeouts.baseMs + (1000 * bytes) / this.timeouts.minBytesPerSecond);
      this.child.send(message, (error) => {
        if (error !== null) this.fail(new Error(`Sending a ${message.type} request to the snapshot copy process failed: ${error.message}`, { cause: error }));
      });
    });
  }

  private receive(response: CopierResponse): void {
    this.clearDeadline();
    if (response.type === 'ready') {
      this.resolveOnline();
      return;
    }
    // The child sends every other response only after it has stopped reading the source (see copier-process.ts).
    this.readingSource = false;
    const pending = this.pending;
    this.pending = undefined;
    if (pending === undefined) return;
    if (response.type === 'failed') {
      pending.reject(Object.assign(new Error(`Copying or hashing the database failed: ${response.message}`), response.code === undefined ? {} : { code: response.code }));
    } else {
      pending.resolve(response);
    }
  }

  /**
   * Kills the child unless it responds within `ms`. Its exit then rejects what is waiting with the reason
   * stored here, and `closeSource` returns once it has exited.
   */
  private startDeadline(step: string, ms: number): void {
    this.clearDeadline();
    this.deadline = setTimeout(() => {
      this.deadline = undefined;
      if (this.hasExited) return;
      this.fail(new Error(`The snapshot copy process did not respond to its ${step} step within ${ms < 10_000 ? `${Math.round(ms)} ms` : `${Math.round(ms / 1000)} s`} and was killed`));
      this.child.kill('SIGKILL');
    }, ms);
    // The deadline alone must not keep the CAS process running.
    this.deadline.unref();
  }

  private clearDeadline(): void {
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    this.deadline = undefined;
  }

  private fail(error: Error): void {
    this.clearDeadline();
    this.failure ??= error;
    this.rejectOnline(error);
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }
}
