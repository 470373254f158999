/**
 * IPC messages between `DatabaseCopier` (database-copier.ts) and its child process (copier-process.ts), sent
 * with the `advanced` (structured clone) serialization, so that a Uint8Array stays one.
 */

/** Bytes that the copier writes over the copy at `offset` after copying. */
export interface Patch {
  offset: number;
  bytes: Uint8Array;
}

export type CopierRequest =
  | { type: 'copy'; source: string; destination: string; size: number; patches: Patch[] }
  | { type: 'digest'; path: string };

export type CopierResponse =
  | { type: 'ready' }
  /** The copy is complete and the child has closed every descriptor of the source. */
  | { type: 'copied'; hashedBytes: number }
  | { type: 'digest'; size: number; sha256: string }
  | { type: 'failed'; message: string; code?: string };
