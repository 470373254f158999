import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareSnapshotNames, parseSnapshotName, snapshotName } from './names.js';
import { selectSnapshotsToDelete, type RetentionCandidate, type RetentionPolicy } from './retention.js';

const NOW = new Date('2026-12-04T12:00:00.000Z');

/** Builds a valid candidate named for a snapshot taken `hoursAgo` hours before NOW. */
function at(hoursAgo: number, valid = true): RetentionCandidate {
  return { name: snapshotName(new Date(NOW.getTime() - hoursAgo * 3_600_000)), valid };
}

interface Case {
  title: string;
  snapshots: RetentionCandidate[];
  policy: RetentionPolicy;
  /** Indexes into `snapshots` that must be deleted. */
  deleted: number[];
}

const CASES: Case[] = [
  { title: 'empty directory', snapshots: [], policy: { keepLast: 3, keepDays: 0 }, deleted: [] },
  { title: 'fewer than keepLast', snapshots: [at(1), at(2)], policy: { keepLast: 3, keepDays: 0 }, deleted: [] },
  { title: 'keepLast drops the oldest', snapshots: [at(1), at(2), at(3), at(4)], policy: { keepLast: 2, keepDays: 0 }, deleted: [2, 3] },
  { title: 'keepLast 0 still keeps the newest', snapshots: [at(1), at(2)], policy: { keepLast: 0, keepDays: 0 }, deleted: [1] },
  {
    title: 'one per day for the kept days',
    // Today 11:00 and 10:00, yesterday 11:00 and 12:00 (hours 25, 24 ago), three days ago.
    snapshots: [at(1), at(2), at(24), at(25), at(72)],
    policy: { keepLast: 1, keepDays: 2 },
    // Kept: at(1) (newest, and today's newest) and at(24) (yesterday's newest); at(72) is outside 2 days.
    deleted: [1, 3, 4],
  },
  {
    title: 'keepDays includes today only when 1',
    snapshots: [at(1), at(3), at(30)],
    policy: { keepLast: 1, keepDays: 1 },
    deleted: [1, 2],
  },
  {
    title: 'invalid snapshots are never selected',
    snapshots: [at(1), at(2, false), at(3), at(4, false)],
    policy: { keepLast: 1, keepDays: 0 },
    deleted: [2],
  },
  {
    title: 'newest valid kept when the newest is invalid',
    snapshots: [at(1, false), at(2), at(3)],
    policy: { keepLast: 1, keepDays: 0 },
    deleted: [2],
  },
  {
    title: 'only invalid snapshots',
    snapshots: [at(1, false), at(2, false)],
    policy: { keepLast: 1, keepDays: 0 },
    deleted: [],
  },
  {
    title: 'names that are not snapshots are ignored',
    snapshots: [{ name: 'notes.txt', valid: true }, { name: '.tmp-snapshot-x', valid: true }, at(1), at(2)],
    policy: { keepLast: 1, keepDays: 0 },
    deleted: [3],
  },
  {
    title: 'both rules together',
    snapshots: [at(0.5), at(1), at(1.5), at(26), at(27), at(50), at(200)],
    policy: { keepLast: 2, keepDays: 3 },
    // keepLast keeps 0 and 1; days: today -> 0, yesterday -> 3 (26 h), two days ago -> 5 (50 h).
    deleted: [2, 4, 6],
  },
];

describe('selectSnapshotsToDelete', () => {
  for (const testCase of CASES) {
    it(testCase.title, () => {
      const expected = testCase.deleted.map((index) => testCase.snapshots[index]!.name).sort(compareSnapshotNames);
      assert.deepEqual(selectSnapshotsToDelete(testCase.snapshots, testCase.policy, NOW), expected);
    });
  }

  it('input order does not matter', () => {
    const snapshots = [at(4), at(1), at(3), at(2)];
    const reversed = [...snapshots].reverse();
    const policy = { keepLast: 2, keepDays: 0 };
    assert.deepEqual(selectSnapshotsToDelete(snapshots, policy, NOW), selectSnapshotsToDelete(reversed, policy, NOW));
  });
});

describe('snapshot names', () => {
  it('round-trip the time', () => {
    const time = new Date('2026-01-02T03:04:05.678Z');
    assert.equal(snapshotName(time), 'snapshot-20260102T030405.678Z');
    assert.equal(parseSnapshotName(snapshotName(time))?.toISOString(), time.toISOString());
    assert.equal(parseSnapshotName(snapshotName(time, 2))?.toISOString(), time.toISOString());
  });

  it('sort by time and sequence', () => {
    const time = new Date('2026-01-02T03:04:05.678Z');
    const later = new Date('2026-01-02T03:04:05.679Z');
    const names = [snapshotName(later), snapshotName(time, 10), snapshotName(time), snapshotName(time, 2)];
    assert.deepEqual([...names].sort(compareSnapshotNames), [snapshotName(time), snapshotName(time, 2), snapshotName(time, 10), snapshotName(later)]);
  });

  it('reject other names', () => {
    for (const name of ['snapshot-', 'snapshot-20261304T000000.000Z', 'snapshot-20260102T030405Z', '.tmp-snapshot-20260102T030405.678Z-1', 'x']) {
      assert.equal(parseSnapshotName(name), undefined, name);
    }
  });
});
