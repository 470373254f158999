/**
 * Names of snapshot directories. A complete snapshot is `snapshot-YYYYMMDDTHHMMSS.sssZ` (UTC), with `-N`
 * appended when two snapshots fall in the same millisecond, so names sort by creation time. A snapshot
 * is built under `.tmp-<name>-<pid>` and renamed when complete; a leftover temporary directory is an
 * attempt that crashed or failed.
 */
export const SNAPSHOT_PREFIX = 'snapshot-';
export const TEMPORARY_PREFIX = '.tmp-snapshot-';
export const MANIFEST_FILE = 'manifest.json';

const NAME_PATTERN = /^snapshot-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z(?:-(\d{1,6}))?$/;

/** Returns the directory name of a snapshot taken at `time`; `sequence` > 0 distinguishes names in one millisecond. */
export function snapshotName(time: Date, sequence = 0): string {
  const stamp = time.toISOString().replace(/[-:]/g, '');
  return sequence === 0 ? `${SNAPSHOT_PREFIX}${stamp}` : `${SNAPSHOT_PREFIX}${stamp}-${sequence}`;
}

/** Returns the creation time encoded in a snapshot name, or undefined when `name` is not a snapshot name. */
export function parseSnapshotName(name: string): Date | undefined {
  const match = NAME_PATTERN.exec(name);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second, millisecond] = match;
  const time = new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}.${millisecond}Z`);
  return Number.isNaN(time.getTime()) ? undefined : time;
}

export function isTemporaryName(name: string): boolean {
  return name.startsWith(TEMPORARY_PREFIX);
}

/** Orders snapshot names oldest first: by time, then by the same-millisecond sequence number. */
export function compareSnapshotNames(a: string, b: string): number {
  const timeA = parseSnapshotName(a)?.getTime() ?? 0;
  const timeB = parseSnapshotName(b)?.getTime() ?? 0;
  if (timeA !== timeB) return timeA - timeB;
  return sequenceOf(a) - sequenceOf(b);
}

function sequenceOf(name: string): number {
  const match = NAME_PATTERN.exec(name);
  return match?.[8] === undefined ? 0 : Number(match[8]);
}
