import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createSnapshot } from '../../src/snapshots/create-snapshot.js';
import { DatabaseCopier } from '../../src/snapshots/database-copier.js';
import { sessionHash, type Session } from '../../src/policy/index.js';
import type { SessionRecord } from '../../src/store/index.js';
import { newClientKey, openStorageCas, sessionRecord, type StorageCas } from '../cas-setup.js';
import { benchTempDir, fmt, mib, percentile, removeDir, type BenchOptions, type FigureResult } from '../harness.js';

const TARGET_FACTOR = 1.3;
const FULL_SIZE_BYTES = 2 ** 30;
const QUICK_SIZE_BYTES = 128 * 2 ** 20;
/** Random bytes in each session's injection file; base64 makes the content 4/3 of this. */
const FILE_BYTES_PER_SESSION = 24 * 1024;
const SESSIONS_PER_TRANSACTION = 500;
/** cp and snapshot runs each: medians of 5 in a full run, 3 in a quick one. */
const FULL_REPETITIONS = 5;
const QUICK_REPETITIONS = 3;

/**
 * Figure 4: snapshot of a large database with createSnapshot (src/snapshots), against `cp` of the same file
 * followed by an fsync of the copy, on the same disk. Reports the snapshot's duration and its read-only
 * window (the time writers wait).
 */
export async function snapshotFigure(options: BenchOptions): Promise<FigureResult> {
  const targetBytes = options.quick ? QUICK_SIZE_BYTES : FULL_SIZE_BYTES;
  const repetitions = options.quick ? QUICK_REPETITIONS : FULL_REPETITIONS;
  const root = benchTempDir('snapshot');
  try {
    const cas = await openStorageCas(join(root, 'data'), join(root, 'platform'));
    try {
      options.progress(`figure 4: building a ${mib(targetBytes)} database of encrypted session rows`);
      const build = await growDatabase(cas, targetBytes, options);
      const databasePath = cas.db.paths.database;
      const size = statSync(databasePath).size;

      // cp and snapshot alternate, `repetitions` times each, and the medians are compared: one run of each
      // drifts too much on a shared disk.
      const cpRuns: Array<{ copyMs: number; withFsyncMs: number }> = [];
      const snapshots: Array<{ durationMs: number; readOnlyWindowMs: number; hashedDuringWindowBytes: number }> = [];
      let copiedSize = 0;
      const snapshotDir = join(root, 'snapshots');
      const walBytesBefore: number[] = [];
      for (let run = 1; run <= repetitions; run++) {
        options.progress(`figure 4: cp + fsync, then snapshot (${run} of ${repetitions})`);
        const copyPath = join(root, 'cp-copy.db');
        cpRuns.push(await timeCopy(databasePath, copyPath));
        rmSync(copyPath, { force: true });

        mkdirSync(snapshotDir, { mode: 0o700 });
        walBytesBefore.push(fileSize(`${databasePath}-wal`));
        const snapshot = await createSnapshot({ db: cas.db, identity: cas.identity, auditHead: () => cas.audit.head(), snapshotDir, now: () => new Date() });
        copiedSize = snapshot.manifest.files['cas.db'].size;
        snapshots.push({ durationMs: snapshot.durationMs, readOnlyWindowMs: snapshot.readOnlyWindowMs, hashedDuringWindowBytes: snapshot.hashedDuringWindowBytes });
        removeDir(snapshotDir);
      }
      const { startMs, hashMs } = await timeHash(databasePath);

      const cp = { copyMs: median(cpRuns.map((r) => r.copyMs)), withFsyncMs: median(cpRuns.map((r) => r.withFsyncMs)) };
      const snapshot = {
        durationMs: median(snapshots.map((r) => r.durationMs)),
        readOnlyWindowMs: median(snapshots.map((r) => r.readOnlyWindowMs)),
        hashedDuringWindowShare: median(snapshots.map((r) => r.hashedDuringWindowBytes / copiedSize)),
      };
      const durationFactor = snapshot.durationMs / cp.withFsyncMs;
      const windowFactor = snapshot.readOnlyWindowMs / cp.withFsyncMs;
      return {
        number: 4,
        title: `Snapshot of a ${options.quick ? mib(targetBytes) : '1 GiB'} database`,
        values: [
          { label: 'database size', value: `${mib(size)} (${fmt(build.sessions)} sessions)` },
          { label: `snapshot duration, median of ${repetitions} (each run)`, value: `${fmt(snapshot.durationMs)} ms (${snapshots.map((r) => fmt(r.durationMs)).join(', ')})` },
          { label: `read-only window (writers paused), median of ${repetitions} (each run)`, value: `${fmt(snapshot.readOnlyWindowMs)} ms (${snapshots.map((r) => fmt(r.readOnlyWindowMs)).join(', ')})` },
          { label: 'bytes in the snapshot copy of cas.db', value: mib(copiedSize) },
          { label: `share of cas.db hashed during the read-only window, median (each run)`, value: `${percent(snapshot.hashedDuringWindowShare)} (${snapshots.map((r) => percent(r.hashedDuringWindowBytes / copiedSize)).join(', ')})` },
        ],
        limit: [
          { label: `\`cp\` of cas.db, then fsync of the copy, median of ${repetitions} (each run)`, value: `${fmt(cp.withFsyncMs)} ms (${cpRuns.map((r) => fmt(r.withFsyncMs)).join(', ')})` },
          { label: '`cp` alone (page cache, not durable), median', value: `${fmt(cp.copyMs)} ms` },
          { label: 'reference: SHA-256 of cas.db alone in the copy process the snapshot uses (DatabaseCopier, start-up excluded)', value: `${fmt(hashMs)} ms` },
          { label: 'reference: start-up of that copy process (fork until ready), outside the read-only window', value: `${fmt(startMs)} ms` },
        ],
        checks: [
          { label: 'snapshot duration ÷ (cp + fsync)', value: fmt(durationFactor, 2), target: `≤ ${TARGET_FACTOR}`, met: durationFactor <= TARGET_FACTOR },
          { label: 'snapshot read-only window ÷ (cp + fsync)', value: fmt(windowFactor, 2), target: `≤ ${TARGET_FACTOR}`, met: windowFactor <= TARGET_FACTOR },
        ],
        method: [
          `The database is grown through the store: ${fmt(build.sessions)} session records, each with one injection file of ${fmt((FILE_BYTES_PER_SESSION * 4) / 3 / 1024)} KiB of fresh random base64 (in the session text and in its parsed form), stored encrypted by CasDatabase.putSession, ${SESSIONS_PER_TRANSACTION} per transaction, until cas.db reaches ${mib(targetBytes)}. Each transaction parses one template session and derives its records from it (new name, new content, session hash recomputed), because parsing every 32 KiB session would dominate the build; building took ${fmt(build.ms / 1000, 1)} s.`,
          options.quick ? `Quick run: ${mib(targetBytes)} instead of 1 GiB.` : 'Full run: 1 GiB.',
          'The database is checkpointed and fsynced before timing, so both copies read a file that is in the page cache.',
          'The limit runs `/bin/cp` on cas.db into the same temporary directory and then fsyncs the copy, because a snapshot is durable when it returns; plain `cp` is shown for reference.',
          'The snapshot is createSnapshot from src/snapshots on the open database: a child process, started before the write gate is paused, copies cas.db with the kernel while it hashes the frozen cas.db, and the gate stays paused until the copy is complete and the child has closed cas.db; after the window the child hashes the rest from the finished copy while the copy is fsynced; then the signed manifest and the rename. Each snapshot directory is removed before the next run.',
        ],
        notes: snapshotNotes(snapshot, cp.withFsyncMs, hashMs, { durationMet: durationFactor <= TARGET_FACTOR, windowMet: windowFactor <= TARGET_FACTOR }, { walBytesBefore, slowestCpMs: Math.max(...cpRuns.map((r) => r.withFsyncMs)) }),
      };
    } finally {
      await cas.close();
    }
  } finally {
    removeDir(root);
  }
}

/** States where the snapshot's time goes, from the figures of this run. */
function snapshotNotes(
  snapshot: { durationMs: number; readOnlyWindowMs: number; hashedDuringWindowShare: number },
  copyMs: number,
  hashMs: number,
  met: { durationMet: boolean; windowMet: boolean },
  context: { walBytesBefore: number[]; slowestCpMs: number },
): string[] {
  const afterWindow = snapshot.durationMs - snapshot.readOnlyWindowMs;
  const notes = [
    `The SHA-256 for the signed manifest is what cp does not pay: hashing cas.db once takes ${fmt(hashMs)} ms in this run (${fmt(hashMs / copyMs, 2)} × cp + fsync). createSnapshot overlaps it with the copy: its child process hashed a median of ${percent(snapshot.hashedDuringWindowShare)} of cas.db during the read-only window (${fmt(snapshot.readOnlyWindowMs)} ms), and the rest from the copy in the ${fmt(afterWindow)} ms after it, while the copy was fsynced. So a snapshot cannot end before about the hashing time plus the start-up of the child process, however fast the disk is.`,
  ];
  if (!met.durationMet) {
    // At full speed the child hashes window ÷ hashing time of the file during the window.
    const fullSpeedShare = Math.min(1, snapshot.readOnlyWindowMs / hashMs);
    const starved = snapshot.hashedDuringWindowShare < fullSpeedShare / 2;
    const hashFactor = hashMs / copyMs;
    const share =
      `At full speed the child would hash about ${percent(fullSpeedShare)} of cas.db during the window (window ÷ hashing time); it hashed ${percent(snapshot.hashedDuringWindowShare)}` +
      (starved ? ', so other processes left it well under one core during the window. ' : ', so it ran at about full speed. ');
    notes.push(
      hashFactor > TARGET_FACTOR
        ? `Remaining gap: hashing, not I/O. ${share}Hashing cas.db alone took ${fmt(hashFactor, 2)} × cp + fsync in this run, above the target. A plain SHA-256 of one file cannot be split across threads, and the manifest keeps that digest so that existing snapshots verify unchanged. So the target is met only where hashing cas.db takes less than about 1.3 × cp + fsync.`
        : `${share}Hashing cas.db alone took ${fmt(hashFactor, 2)} × cp + fsync, within the target, so the rest of the gap is in the child's start-up, the manifest and directory fsyncs, or the machine's drift. That needs a profile of createSnapshot.`,
    );
  }
  if (!met.windowMet) {
    const walEmpty = context.walBytesBefore.every((bytes) => bytes === 0);
    const drift =
      snapshot.readOnlyWindowMs <= context.slowestCpMs
        ? `The slowest cp + fsync of this run took ${fmt(context.slowestCpMs)} ms, longer than the median window, so the gap is within the machine's drift.`
        : `That is longer than even the slowest cp + fsync of this run (${fmt(context.slowestCpMs)} ms), so the window needs a profile of createSnapshot.`;
    notes.push(
      `The read-only window alone is ${fmt(snapshot.readOnlyWindowMs / copyMs, 2)} × cp + fsync. ` +
        (walEmpty
          ? 'The WAL was empty before every snapshot, so createSnapshot took its file-copy path (checkpoint, then a kernel file copy), which does the work of cp. '
          : 'The WAL was not empty before every snapshot, so createSnapshot may have fallen back to SQLite\'s online backup API, which copies page by page. ') +
        drift,
    );
  }
  return notes;
}

function percent(share: number): string {
  return `${fmt(share * 100)}%`;
}

/** Size of a file in bytes; 0 when it does not exist. */
function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

/**
 * Adds session rows until cas.db is at least `targetBytes`, and returns their count and the time taken.
 * Parsing a 32 KiB session per row would dominate the build. So each transaction parses one template
 * session and derives its rows from it, each with a new name, fresh random injection-file content (in the
 * text and in the parsed form) and its own session hash.
 */
async function growDatabase(cas: StorageCas, targetBytes: number, options: BenchOptions): Promise<{ sessions: number; ms: number }> {
  const owner = newClientKey();
  const started = performance.now();
  let sessions = 0;
  let lastReport = started;
  while (statSync(cas.db.paths.database).size < targetBytes) {
    const template = await sessionRecord(largeSessionText('template', randomContent()), owner);
    const records: SessionRecord[] = [];
    for (let i = 0; i < SESSIONS_PER_TRANSACTION; i++) {
      const name = `bulk-${sessions + i}`;
      const content = randomContent();
      const session = structuredClone(template.data) as Session;
      session.name = name;
      session.images[0]!.injectionFiles[0]!.content = content;
      records.push({ ...template, name, text: largeSessionText(name, content), hash: sessionHash(session), data: session });
    }
    await cas.db.writeGate.run(() =>
      cas.db.transaction(() => {
        for (const record of records) cas.db.putSession(record);
      }),
    );
    sessions += records.length;
    cas.db.checkpoint();
    if (performance.now() - lastReport > 10_000) {
      options.progress(`figure 4: ${fmt(sessions)} sessions, ${mib(statSync(cas.db.paths.database).size)}`);
      lastReport = performance.now();
    }
  }
  // No fsync of cas.db here: the checkpoint above fsyncs it (synchronous = FULL), and closing a descriptor of
  // cas.db in this process would release SQLite's lock on it.
  return { sessions, ms: performance.now() - started };
}

function randomContent(): string {
  return randomBytes(FILE_BYTES_PER_SESSION).toString('base64');
}

function largeSessionText(name: string, content: string): string {
  return `name: ${name}
version: "0.3"
services:
  - name: app
    image_name: app_image
    command: /usr/bin/app
    environment:
      DB_PASSWORD: $$SCONE::db_password$$
images:
  - name: app_image
    injection_files:
      - path: /etc/app/bundle.b64
        content: ${content}
secrets:
  - name: db_password
    kind: ascii
    size: 24
security:
  attestation:
    mode: none
`;
}

/**
 * Times the start of the snapshot's copy process (fork until it is ready) and the SHA-256 of `path` in it,
 * from the started child to the digest.
 */
async function timeHash(path: string): Promise<{ startMs: number; hashMs: number }> {
  const forked = performance.now();
  const copier = DatabaseCopier.start();
  try {
    await copier.ready();
    const started = performance.now();
    await copier.digestCopy(path);
    return { startMs: started - forked, hashMs: performance.now() - started };
  } finally {
    await copier.close();
  }
}

/** Times `/bin/cp SOURCE DEST`, and the same followed by an fsync of DEST. */
async function timeCopy(source: string, destination: string): Promise<{ copyMs: number; withFsyncMs: number }> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('cp', [source, destination], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cp exited with ${code}`))));
  });
  const copied = performance.now();
  const fd = openSync(destination, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const synced = performance.now();
  return { copyMs: copied - started, withFsyncMs: synced - started };
}
