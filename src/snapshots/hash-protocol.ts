/** Messages and shared state between `CopyHasher` (copy-hasher.ts) and its worker (hash-worker.ts). */

/** Values of the shared state word. The worker reads the source only after it has set the word to READING. */
export const SOURCE_OPEN = 0;
export const SOURCE_READING = 1;
export const SOURCE_CLOSED = 2;

export interface HashWorkerData {
  /** One Int32 state word (SOURCE_OPEN, SOURCE_READING or SOURCE_CLOSED). */
  state: SharedArrayBuffer;
  /** Size of each read, in bytes. */
  chunkBytes: number;
}

/** Bytes that the copier writes over the copy at `offset` after copying. */
export interface Patch {
  offset: number;
  bytes: Uint8Array;
}

export type HashRequest = { type: 'source'; path: string; size: number; patches: Patch[] } | { type: 'copy'; path: string };

export type HashResponse =
  | { type: 'ready' }
  | { type: 'source-hashed'; bytes: number }
  | { type: 'done'; size: number; sha256: string }
  | { type: 'failed'; message: string; code?: string };
