import type { Command } from 'commander';
import { outputFormat, printResult } from '../../client/output.js';
import type { CasStatus } from '../../status/status-types.js';
import { connectPinnedIfAny, withClientOptions, type ClientFlags } from '../client-options.js';

/**
 * `cas status`: prints the role, mode, version and health of a CAS and, for its owner, sessions,
 * snapshots, audit head, backup platforms, lease and audit webhook. The server's certificate is checked
 * against the pin in CAS_HOME when there is one; otherwise the output states that it was not verified.
 */
export function register(program: Command): void {
  const status = program
    .command('status')
    .description('show the role, mode, version and health of a CAS; its owner also sees snapshots, audit head, backups and lease');
  withClientOptions(status).action(async (flags: ClientFlags) => {
    const format = outputFormat(flags.output);
    const { client, casUrl, pinned } = await connectPinnedIfAny(flags.cas);
    const reported = (await client.status()) as unknown as CasStatus;
    const result = { url: casUrl.origin, certificatePinned: pinned, ...reported };
    printResult(format, result, formatStatus(result));
  });
}

/** Formats a status as aligned `label: value` lines for a terminal. */
export function formatStatus(status: CasStatus & { url: string; certificatePinned: boolean }): string {
  const lines: Array<[string, string]> = [
    ['CAS', status.url],
    ['certificate', `${status.certificateSha256} (${status.certificatePinned ? 'pinned' : 'NOT verified: run cas attest to pin it'})`],
    ['role', status.role],
    ['mode', status.simulated ? 'simulation (simulated evidence proves nothing; for development and tests only)' : 'hardware'],
  ];
  if (status.version !== undefined) lines.push(['version', status.version]);
  if (status.health !== undefined) lines.push(['health', status.health]);
  if (status.role === 'standby' || status.role === 'opening-database') lines.push(['primary', JSON.stringify(status.primary ?? null)]);

  const owner = status.owner;
  if (owner === undefined) {
    if (status.provisioned === true) lines.push(['details', 'only the CAS owner sees sessions, snapshots, audit head, backups and lease']);
    return render(lines);
  }
  lines.push(['owner', owner.ownerKeyHash]);
  lines.push(['sessions', String(owner.sessions)]);

  const snapshots = owner.snapshots;
  if (!snapshots.enabled) lines.push(['newest snapshot', 'snapshots are disabled (--no-snapshots)']);
  const newest = snapshots.newest;
  lines.push(['newest snapshot', newest === null ? 'none' : `${newest.name}, created ${newest.createdAt} (${formatAge(newest.ageSeconds)} ago)`]);
  const attempt = snapshots.lastAttempt;
  if (attempt === null) lines.push(['last attempt', 'none since this CAS started']);
  else if (attempt.result === 'success') lines.push(['last attempt', `success at ${attempt.at} (${attempt.snapshot}, ${attempt.durationMs} ms)`]);
  else lines.push(['last attempt', `FAILED at ${attempt.at}: ${attempt.code}: ${attempt.message}`]);
  if (snapshots.problem !== undefined) lines.push(['snapshot problem', snapshots.problem]);

  lines.push(['audit head', `seq ${owner.audit.seq}, hash ${owner.audit.hash}`]);
  lines.push(['backup platforms', owner.backupPlatforms.length === 0 ? 'none' : owner.backupPlatforms.map((entry) => `${entry.platformId} (${entry.evidenceType}${entry.thisInstance ? ', this instance' : ''})`).join(', ')]);

  const lease = owner.lease;
  if (lease.kind === 'none') lines.push(['lease', 'none (--lease none: no standby can take over)']);
  else if ('error' in lease) lines.push(['lease', `${lease.kind}: reading the lease failed: ${lease.error}`]);
  else lines.push(['lease', lease.holder === null ? `${lease.location}: no holder` : `${lease.location}: held by ${lease.holder}, expires ${lease.expiresAt ?? 'unknown'}`]);

  const webhook = owner.webhook;
  if (webhook !== null) {
    const full = webhook.queueFull ? ' QUEUE FULL: entries are dropped for the webhook (the audit log keeps them)' : '';
    lines.push(['audit webhook', `${webhook.url}: ${webhook.queueLength}/${webhook.queueCapacity} queued, ${webhook.delivered} delivered, ${webhook.dropped} dropped${full}`]);
  }
  return render(lines);
}

function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function render(lines: Array<[string, string]>): string {
  const width = Math.max(...lines.map(([label]) => label.length)) + 1;
  return lines.map(([label, value]) => `${`${label}:`.padEnd(width + 1)}${value}`).join('\n');
}
