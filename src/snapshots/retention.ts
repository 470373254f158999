import { compareSnapshotNames, parseSnapshotName } from './names.js';

/** How many snapshots to keep. Both rules apply; a snapshot that either rule keeps stays. */
export interface RetentionPolicy {
  /** Keep the newest `keepLast` valid snapshots (at least 1). */
  keepLast: number;
  /** Also keep the newest valid snapshot of each UTC day, for the `keepDays` days that end today (0: none). */
  keepDays: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { keepLast: 10, keepDays: 7 };

export interface RetentionCandidate {
  name: string;
  /** False for a directory that has a snapshot name but no verifiable manifest. */
  valid: boolean;
}

/**
 * Returns the names of the snapshots to delete under `policy` at time `now`. Pure: it reads no files.
 * The newest valid snapshot is always kept, even with a policy that would keep nothing. Invalid entries
 * are never selected: a directory with a snapshot name but a broken manifest may be the evidence of a
 * problem, so an operator removes it. Names that are not snapshot names are ignored.
 */
export function selectSnapshotsToDelete(candidates: readonly RetentionCandidate[], policy: RetentionPolicy, now: Date): string[] {
  const valid = candidates
    .filter((candidate) => candidate.valid && parseSnapshotName(candidate.name) !== undefined)
    .map((candidate) => candidate.name)
    .sort(compareSnapshotNames)
    .reverse();
  if (valid.length === 0) return [];

  const keep = new Set<string>(valid.slice(0, Math.max(1, policy.keepLast)));

  const oldestKeptDay = utcDay(now) - Math.max(0, policy.keepDays - 1) * DAY_MS;
  const daysSeen = new Set<number>();
  for (const name of valid) {
    const day = utcDay(parseSnapshotName(name)!);
    if (policy.keepDays <= 0 || day < oldestKeptDay || daysSeen.has(day)) continue;
    daysSeen.add(day);
    keep.add(name);
  }

  return valid.filter((name) => !keep.has(name)).sort(compareSnapshotNames);
}

const DAY_MS = 86_400_000;

function utcDay(time: Date): number {
  return Math.floor(time.getTime() / DAY_MS) * DAY_MS;
}
