/**
 * Child process of `DatabaseCopier` (database-copier.ts): copies cas.db and computes the SHA-256 of the copy.
 * It runs in its own process because SQLite's POSIX locks belong to a process: when the CAS process closed a
 * descriptor of cas.db that it opened with node:fs, the kernel released the lock that SQLite holds in
 * EXCLUSIVE locking mode. Requests, in this order:
 *
 * - `copy` (optional): copy the source file into a new destination file with the kernel (a reflink or
 *   copy_file_range where the file system supports it). Meanwhile, hash the source from offset 0 with
 *   `patches` applied, because the parent writes them over the copy afterwards. Responds `copied` with the
 *   number of bytes hashed from the source once the copy is complete and no descriptor of the source is
 *   open, also when hashing stopped early.
 * - `digest`: hash the finished copy from where the `copy` phase stopped to its end, check that the patched
 *   ranges hold the patched bytes and that the copy has exactly the hashed size and the source's size, then
 *   respond `digest`.
 *
 * Any failure is sent as a `failed` response, after the child has stopped reading the source. The process exits
 * when its parent disconnects. Memory: one read buffer of `chunkBytes` (argv[2]).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { CopierRequest, CopierResponse, Patch } from './copier-protocol.js';

if (process.send === undefined) throw new Error('copier-process.js must run as a child process with an IPC channel');
const chunkBytes = Number(process.argv[2]);
if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new Error(`copier-process.js: invalid chunk size ${process.argv[2]}, expected a positive number of bytes`);

const hash = createHash('sha256');
let hashed = 0;
let patches: Array<{ offset: number; bytes: Buffer }> = [];
/** Size of the source of the `copy` request, which the finished copy must have. */
let sourceSize: number | undefined;
const buffer = Buffer.allocUnsafe(chunkBytes);

function send(response: CopierResponse): void {
  if (process.connected) process.send?.(response);
}

process.on('disconnect', () => process.exit(0));
process.on('message', (request: CopierRequest) => {
  void handle(request).then(send, (error: unknown) => {
    const { message, code } = error as NodeJS.ErrnoException;
    send({ type: 'failed', message: message ?? String(error), ...(code === undefined ? {} : { code }) });
  });
});
send({ type: 'ready' });

async function handle(request: CopierRequest): Promise<CopierResponse> {
  if (request.type === 'copy') {
    patches = request.patches.map((patch: Patch) => ({ offset: patch.offset, bytes: Buffer.from(patch.bytes) }));
    sourceSize = request.size;
    await copyAndHashSource(request.source, request.destination, request.size);
    return { type: 'copied', hashedBytes: hashed };
  }
  return { type: 'digest', ...(await hashCopy(request.path)) };
}

/**
 * Copies `source` to `destination` and hashes up to `size` bytes of the source until the copy is complete.
 * Returns only after the copy has settled and the source's descriptor is closed, also when either failed.
 */
async function copyAndHashSource(source: string, destination: string, size: number): Promise<void> {
  const fd = openSync(source, 'r');
  let copying = true;
  let copyError: unknown;
  const copied = copyFile(source, destination, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE).then(
    () => (copying = false),
    (error: unknown) => {
      copying = false;
      copyError = error;
    },
  );
  try {
    await hashRange(fd, () => copying, size, applyPatches);
  } finally {
    closeSync(fd);
    await copied;
  }
  if (copyError !== undefined) throw copyError;
}

/** Hashes the rest of the finished copy and checks that it matches what the source phase hashed. */
async function hashCopy(path: string): Promise<{ size: number; sha256: string }> {
  const fd = openSync(path, 'r');
  try {
    await hashRange(fd, () => true, Number.MAX_SAFE_INTEGER, () => undefined);
    for (const patch of patches) {
      const actual = Buffer.alloc(patch.bytes.length);
      const bytesRead = readSync(fd, actual, 0, actual.length, patch.offset);
      if (bytesRead !== actual.length || !actual.equals(patch.bytes)) {
        throw new Error(`${path} does not contain the bytes hashed at offset ${patch.offset}`);
      }
    }
    // The copy may not end before the bytes hashed from the source. A longer copy was hashed to its end above.
    const { size } = fstatSync(fd);
    if (size !== hashed) throw new Error(`${path} has ${size} bytes, but ${hashed} were hashed`);
    if (sourceSize !== undefined && size !== sourceSize) throw new Error(`${path} has ${size} bytes, but its source had ${sourceSize}`);
    return { size, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/**
 * Hashes `fd` from offset `hashed` until `end` or its end of file, while `proceed()` holds. Reads are
 * synchronous, which hashed 1 GiB from the page cache in about 760 ms on the 2-core benchmark VM, against
 * 810 to 880 ms with two buffers and asynchronous reads. After each chunk the loop yields to the event loop,
 * so that the completion of the copy can turn `proceed()` false. No read is in progress when this returns.
 */
async function hashRange(fd: number, proceed: () => boolean, end: number, transform: (chunk: Buffer, start: number) => void): Promise<void> {
  while (proceed() && hashed < end) {
    const bytesRead = readSync(fd, buffer, 0, Math.min(chunkBytes, end - hashed), hashed);
    if (bytesRead === 0) {
      if (end !== Number.MAX_SAFE_INTEGER) throw new Error(`The source ended at ${hashed} bytes, expected ${end}`);
      return;
    }
    const chunk = buffer.subarray(0, bytesRead);
    transform(chunk, hashed);
    hash.update(chunk);
    hashed += bytesRead;
    await nextTurn();
  }
}

/** Replaces the bytes of `chunk` (which starts at file offset `start`) that a patch covers. */
function applyPatches(chunk: Buffer, start: number): void {
  for (const patch of patches) {
    const from = Math.max(patch.offset, start);
    const to = Math.min(patch.offset + patch.bytes.length, start + chunk.length);
    if (from < to) patch.bytes.copy(chunk, from - start, from - patch.offset, to - patch.offset);
  }
}
