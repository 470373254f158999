/**
 * Worker thread of `CopyHasher` (copy-hasher.ts): computes the SHA-256 of a database copy while the copy is
 * still being written. Messages, in this order:
 *
 * - `source` (optional): hash the source file from offset 0 while the shared state allows it, that is while
 *   the read-only window is open and the source equals what the copy receives. `patches` are the byte ranges
 *   the copier changes in the copy after copying, so the hash covers the copy's bytes, not the source's.
 *   Posts `source-hashed` with the number of bytes hashed from the source.
 * - `copy`: the copy is complete. Hash it from where the source phase stopped to its end, check that the
 *   patched ranges in the copy hold the patched bytes and that the copy has exactly the hashed size, then
 *   post `done` with size and digest.
 *
 * Any failure is posted as `failed`. The worker allocates one read buffer of `chunkBytes`.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { SOURCE_CLOSED, SOURCE_OPEN, SOURCE_READING, type HashRequest, type HashResponse, type HashWorkerData } from './hash-protocol.js';

if (parentPort === null) throw new Error('hash-worker.js must run in a worker thread');
const port = parentPort;
const { state: stateBuffer, chunkBytes } = workerData as HashWorkerData;
const state = new Int32Array(stateBuffer);
const buffer = Buffer.allocUnsafe(chunkBytes);
const hash = createHash('sha256');
let hashed = 0;
let patches: Array<{ offset: number; bytes: Buffer }> = [];

port.postMessage({ type: 'ready' } satisfies HashResponse);
port.on('message', (request: HashRequest) => {
  try {
    if (request.type === 'source') {
      patches = request.patches.map((patch) => ({ offset: patch.offset, bytes: Buffer.from(patch.bytes) }));
      hashSource(request.path, request.size);
      port.postMessage({ type: 'source-hashed', bytes: hashed } satisfies HashResponse);
    } else {
      const digest = hashCopy(request.path);
      port.postMessage({ type: 'done', ...digest } satisfies HashResponse);
    }
  } catch (error) {
    const { message, code } = error as NodeJS.ErrnoException;
    port.postMessage({ type: 'failed', message: message ?? String(error), ...(code === undefined ? {} : { code }) } satisfies HashResponse);
  }
});

/** Hashes the source from offset 0 until it ends or the main thread closes the read-only window. */
function hashSource(path: string, size: number): void {
  const fd = openSync(path, 'r');
  try {
    while (hashed < size) {
      // The main thread closes the window only while no source read runs (see CopyHasher.closeSource).
      if (Atomics.compareExchange(state, 0, SOURCE_OPEN, SOURCE_READING) !== SOURCE_OPEN) return;
      let bytesRead: number;
      try {
        bytesRead = readSync(fd, buffer, 0, Math.min(chunkBytes, size - hashed), hashed);
      } finally {
        Atomics.store(state, 0, SOURCE_OPEN);
        Atomics.notify(state, 0);
      }
      if (bytesRead === 0) throw new Error(`${path} ended at ${hashed} bytes, expected ${size}`);
      const chunk = buffer.subarray(0, bytesRead);
      applyPatches(chunk, hashed);
      hash.update(chunk);
      hashed += bytesRead;
    }
  } finally {
    closeSync(fd);
  }
}

/** Hashes the rest of the finished copy and checks that it matches what the source phase hashed. */
function hashCopy(path: string): { size: number; sha256: string } {
  if (Atomics.load(state, 0) !== SOURCE_CLOSED) throw new Error('digestCopy was called before closeSource');
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const bytesRead = readSync(fd, buffer, 0, chunkBytes, hashed);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      hashed += bytesRead;
    }
    for (const patch of patches) {
      const actual = Buffer.alloc(patch.bytes.length);
      const bytesRead = readSync(fd, actual, 0, actual.length, patch.offset);
      if (bytesRead !== actual.length || !actual.equals(patch.bytes)) {
        throw new Error(`${path} does not contain the bytes hashed at offset ${patch.offset}`);
      }
    }
    // The copy may not end before the bytes hashed from the source. A longer copy was hashed to its end above.
    const size = fstatSync(fd).size;
    if (size !== hashed) throw new Error(`${path} has ${size} bytes, but ${hashed} were hashed`);
    return { size, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
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
