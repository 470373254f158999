import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HEALTH_PATHS } from '../../src/config/defaults.js';
import type { SessionRecord } from '../../src/store/index.js';
import { newClientKey, openStorageCas, sessionRecord, sessionText } from '../cas-setup.js';
import { benchTempDir, fmt, freeLoopbackPort, mib, processMemory, removeDir, spawnCasServe, waitForStatus200, type BenchOptions, type FigureResult } from '../harness.js';

const FULL_SESSIONS = 100_000;
const QUICK_SESSIONS = 10_000;
const SESSIONS_PER_TRANSACTION = 5000;
const TARGET_STARTUP_MS = 1000;
const TARGET_RSS_BYTES = 256 * 2 ** 20;
const POLL_INTERVAL_MS = 5;

/**
 * Figure 5: time from spawning `cas serve` to its first 200 on the readiness endpoint, and its resident
 * memory then, on a data directory with 100,000 sessions seeded through the store API.
 */
export async function startupFigure(options: BenchOptions): Promise<FigureResult> {
  const count = options.quick ? QUICK_SESSIONS : FULL_SESSIONS;
  const root = benchTempDir('startup');
  const dataDir = join(root, 'data');
  const platformDir = join(root, 'platform');
  try {
    options.progress(`figure 5: seeding ${fmt(count)} sessions through the store`);
    const seedStarted = performance.now();
    await seedSessions(dataDir, platformDir, count);
    const seedMs = performance.now() - seedStarted;

    // The first start of a data directory creates the provisioning token; a restart is what the figure times.
    options.progress('figure 5: first start of cas serve (not timed)');
    const args = ['--data-dir', dataDir, '--platform-dir', platformDir];
    const first = spawnCasServe(await freeLoopbackPort(), args);
    try {
      await waitForStatus200(first, HEALTH_PATHS.readiness, { intervalMs: 20, timeoutMs: 60_000 });
    } finally {
      await first.stop();
    }

    options.progress('figure 5: timing the restart to readiness');
    const port = await freeLoopbackPort();
    const spawned = performance.now();
    const server = spawnCasServe(port, args);
    let readyMs: number;
    let memory: { rssBytes: number; peakRssBytes: number };
    try {
      readyMs = (await waitForStatus200(server, HEALTH_PATHS.readiness, { intervalMs: POLL_INTERVAL_MS, timeoutMs: 60_000 })) - spawned;
      memory = processMemory(server.child.pid!);
    } finally {
      await server.stop();
    }

    const sessionsNote = options.quick ? ` Quick run: ${fmt(count)} sessions instead of ${fmt(FULL_SESSIONS)}; the targets are for ${fmt(FULL_SESSIONS)}.` : '';
    return {
      number: 5,
      title: `Start-up time to ready and resident memory with ${fmt(count)} sessions`,
      values: [
        { label: 'sessions in the database', value: fmt(count) },
        { label: 'spawn to first 200 on the readiness endpoint', value: `${fmt(readyMs)} ms` },
        { label: 'resident memory (VmRSS) when ready', value: mib(memory.rssBytes) },
        { label: 'peak resident memory (VmHWM) until ready', value: mib(memory.peakRssBytes) },
      ],
      checks: [
        { label: 'start-up to ready', value: `${fmt(readyMs)} ms`, target: `≤ ${fmt(TARGET_STARTUP_MS)} ms`, met: readyMs <= TARGET_STARTUP_MS },
        { label: 'resident memory when ready', value: mib(memory.rssBytes), target: `≤ ${mib(TARGET_RSS_BYTES)}`, met: memory.rssBytes <= TARGET_RSS_BYTES },
      ],
      method: [
        `Seeding: ${fmt(count)} sessions, each parsed from a small session with one generated secret (sessionRecord in bench/cas-setup.ts) and stored encrypted with CasDatabase.putSession, ${fmt(SESSIONS_PER_TRANSACTION)} per transaction, with the database, CAS identity and audit log opened as cas serve opens them; seeding took ${fmt(seedMs / 1000, 1)} s.${sessionsNote}`,
        'cas serve is started once on the data directory and stopped, so the timed start is a restart of an existing CAS; both starts use the default settings (snapshots on, log level info).',
        `The time runs from spawn of \`node dist/src/cli/main.js serve\` to the first 200 from ${HEALTH_PATHS.readiness}, polled every ${POLL_INTERVAL_MS} ms over HTTPS; it includes Node's start and module loading.`,
        'Memory is read from /proc/PID/status of the server process right after the first 200.',
      ],
      notes: [],
    };
  } finally {
    removeDir(root);
  }
}

async function seedSessions(dataDir: string, platformDir: string, count: number): Promise<void> {
  const cas = await openStorageCas(dataDir, platformDir);
  try {
    const owner = newClientKey();
    for (let first = 0; first < count; first += SESSIONS_PER_TRANSACTION) {
      const records: SessionRecord[] = [];
      for (let i = first; i < Math.min(count, first + SESSIONS_PER_TRANSACTION); i++) {
        records.push(await sessionRecord(sessionText(`seeded-session-${i}`), owner));
      }
      await cas.db.writeGate.run(() =>
        cas.db.transaction(() => {
          for (const record of records) cas.db.putSession(record);
        }),
      );
    }
    if (cas.db.countSessions() !== count) throw new Error(`seeding stored ${cas.db.countSessions()} sessions, expected ${count}`);
  } finally {
    await cas.close();
  }
}
