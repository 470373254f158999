import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CasDatabase, loadOrCreateSimulationPlatform } from '../store/index.js';
import { createSelfSignedCertificate } from '../tls/certificates.js';
import { createSnapshot } from './create-snapshot.js';

export interface SnapshotBenchmarkResult {
  /** Size of cas.db when the snapshot was taken, in bytes. */
  databaseBytes: number;
  /** Wall time of `createSnapshot`, in milliseconds. */
  durationMs: number;
  /** Time during which writers waited, in milliseconds. */
  readOnlyWindowMs: number;
  /** Path of the database that was snapshotted, so a caller can time `cp` of the same file before `cleanup`. */
  databasePath: string;
  /** Removes the temporary directory. */
  cleanup(): void;
}

const ROW_BYTES = 16 * 1024;
const ROWS_PER_TRANSACTION = 200;

/**
 * Builds an encrypted database of at least `databaseBytes` (sessions with random payloads) in a
 * temporary directory under `workDir` (default the OS temporary directory), then times one
 * `createSnapshot` of it. For the benchmark suite, which compares the result with `cp` of the same file.
 */
export async function benchmarkSnapshot(options: { databaseBytes: number; workDir?: string }): Promise<SnapshotBenchmarkResult> {
  const root = mkdtempSync(join(options.workDir ?? tmpdir(), 'cas-snapshot-bench-'));
  const cleanup = (): void => rmSync(root, { recursive: true, force: true });
  try {
    const platform = await loadOrCreateSimulationPlatform(join(root, 'platform'));
    const identity = await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 });
    const db = CasDatabase.open({ dataDir: join(root, 'data'), platform });
    try {
      let row = 0;
      // The WAL counts towards the size until the checkpoint moves it into cas.db; repeat until cas.db is large enough.
      while (statSync(db.paths.database).size < options.databaseBytes) {
        while (statSync(db.paths.database).size + walBytes(db.paths.database) < options.databaseBytes) {
          await db.writeGate.run(() =>
            db.transaction(() => {
              for (let i = 0; i < ROWS_PER_TRANSACTION; i += 1, row += 1) {
                const now = new Date().toISOString();
                db.putSession({ name: `bench-${row}`, hash: '0'.repeat(64), text: randomBytes(ROW_BYTES).toString('base64'), creatorKeyHash: '0'.repeat(64), createdAt: now, updatedAt: now, secrets: {} });
              }
            }),
          );
        }
        db.checkpoint();
      }
      const snapshotDir = join(root, 'snapshots');
      mkdirSync(snapshotDir, { mode: 0o700 });
      const result = await createSnapshot({ db, identity, snapshotDir });
      return { databaseBytes: result.manifest.files['cas.db'].size, durationMs: result.durationMs, readOnlyWindowMs: result.readOnlyWindowMs, databasePath: db.paths.database, cleanup };
    } finally {
      db.close();
    }
  } catch (error) {
    cleanup();
    throw error;
  }
}

function walBytes(databasePath: string): number {
  try {
    return statSync(`${databasePath}-wal`).size;
  } catch {
    return 0;
  }
}
