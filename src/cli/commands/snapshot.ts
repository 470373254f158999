import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { outputFormat, printResult } from '../../client/output.js';
import { DEFAULTS, FILE_NAMES } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';
import type { Platform } from '../../store/index.js';

interface SnapshotFlags {
  output?: string;
}

/**
 * `cas snapshot list|verify|restore`: inspect database snapshots and restore one into a data directory.
 * The snapshot and store modules (better-sqlite3) are loaded only when one of these commands runs.
 */
export function register(program: Command): void {
  const snapshot = program.command('snapshot').description('list, verify and restore database snapshots');

  snapshot
    .command('list')
    .description('list snapshots, newest first, with their state (valid, invalid or incomplete)')
    .option('--snapshot-dir <dir>', `snapshot directory (default ${DEFAULTS.dataDir}/${DEFAULTS.snapshotSubdir})`)
    .option('--output <format>', 'text or json', 'text')
    .action(async (flags: SnapshotFlags & { snapshotDir?: string }) => {
      const format = outputFormat(flags.output);
      const dir = resolve(flags.snapshotDir ?? join(DEFAULTS.dataDir, DEFAULTS.snapshotSubdir));
      const { listSnapshots } = await import('../../snapshots/inspect.js');
      const snapshots = await listSnapshots(dir);
      const lines = snapshots.map((s) =>
        [s.name, s.status, s.createdAt ?? '-', s.changeCounter ?? '-', s.databaseBytes ?? '-', s.problem ?? ''].join('\t').trimEnd(),
      );
      printResult(format, { snapshotDir: dir, snapshots }, lines.join('\n'), snapshots.length === 0 ? `no snapshots in ${dir}` : undefined);
    });

  snapshot
    .command('verify <snapshot-dir>')
    .description("check the manifest signature and file hashes, and with this platform's key open the database and run SQLite's integrity check")
    .option('--platform-dir <dir>', 'platform key used to open the database (default ~/.cas-platform); without a key only files are checked')
    .option('--mode <mode>', 'platform mode: simulation or hardware', DEFAULTS.mode)
    .option('--audit-log <path>', 'also check that this audit log file (or directory) verifies and contains the snapshot\'s audit head')
    .option('--output <format>', 'text or json', 'text')
    .action(async (path: string, flags: SnapshotFlags & { platformDir?: string; mode: string; auditLog?: string }) => {
      const format = outputFormat(flags.output);
      const platformDir = flags.platformDir ?? DEFAULTS.platformDir();
      const platform = await existingPlatform(platformDir, flags.mode, flags.platformDir !== undefined);
      const { verifySnapshot } = await import('../../snapshots/inspect.js');
      const result = await verifySnapshot(resolve(path), { ...(platform === undefined ? {} : { platform }), platformDir, ...auditLogOption(flags.auditLog) });
      const note = platform === undefined ? `no platform key in ${platformDir}: only the manifest and file hashes were checked` : undefined;
      const summary = { path: result.path, name: result.manifest.name, createdAt: result.manifest.createdAt, changeCounter: result.manifest.changeCounter, checks: result.checks, opened: result.opened ?? null };
      printResult(format, { valid: true, ...summary }, `valid: ${result.checks.join(', ')}`, note);
    });

  snapshot
    .command('restore <snapshot-dir>')
    .description('verify a snapshot with this platform\'s key and copy it into a data directory for cas serve')
    .requiredOption('--data-dir <dir>', 'data directory to restore into; must be empty unless --force')
    .option('--platform-dir <dir>', 'platform key that opens the snapshot (default ~/.cas-platform)')
    .option('--mode <mode>', 'platform mode: simulation or hardware', DEFAULTS.mode)
    .option('--force', 'replace the database in a non-empty data directory; the old files are moved into replaced-<time>/')
    .option('--audit-log <path>', 'check first that this audit log verifies and contains the snapshot\'s audit head')
    .option('--output <format>', 'text or json', 'text')
    .action(async (path: string, flags: SnapshotFlags & { dataDir: string; platformDir?: string; mode: string; force?: boolean; auditLog?: string }) => {
      const format = outputFormat(flags.output);
      const platformDir = flags.platformDir ?? DEFAULTS.platformDir();
      const platform = await existingPlatform(platformDir, flags.mode, true);
      const { restoreSnapshot } = await import('../../snapshots/restore.js');
      const result = await restoreSnapshot(resolve(path), { dataDir: resolve(flags.dataDir), platform: platform!, platformDir, force: flags.force === true, ...auditLogOption(flags.auditLog) });
      const json = { dataDir: result.dataDir, snapshot: result.marker.snapshot, snapshotCreatedAt: result.marker.snapshotCreatedAt, changeCounter: result.marker.changeCounter, replacedDir: result.replacedDir ?? null, checks: result.verification.checks };
      printResult(format, json, result.dataDir, `restored ${result.marker.snapshot} (taken ${result.marker.snapshotCreatedAt}); start it with: cas serve --data-dir ${result.dataDir} --platform-dir ${platformDir}`);
    });
}

/**
 * Opens the platform in `platformDir` without creating a key: a new key could never open an existing
 * snapshot. Returns undefined when there is no key and `required` is false.
 */
async function existingPlatform(platformDir: string, mode: string, required: boolean): Promise<Platform | undefined> {
  if (mode !== 'simulation' && mode !== 'hardware') throw new CasError('INVALID_ARGUMENT', `invalid --mode "${mode}"; expected simulation or hardware`);
  if (mode === 'simulation' && !existsSync(join(platformDir, FILE_NAMES.platformKey))) {
    if (!required) return undefined;
    throw new CasError(
      'PLATFORM_KEY_ERROR',
      `no platform key in ${platformDir}; this machine needs the platform key that was registered as a backup target (cas backup register --platform-dir ${platformDir})`,
    );
  }
  const { openPlatform } = await import('../../store/index.js');
  return openPlatform({ mode, platformDir });
}

function auditLogOption(auditLog: string | undefined): { auditLog?: string } {
  return auditLog === undefined ? {} : { auditLog: resolve(auditLog) };
}
