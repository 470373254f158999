/**
 * Database snapshots for disaster recovery: creation under a paused write gate, the signed manifest,
 * retention, listing, verification and restore. Formats and guarantees: docs/snapshots.md.
 */
export { createSnapshot, type CreateSnapshotOptions, type SnapshotResult, type SnapshotSource } from './create-snapshot.js';
export { parseAndVerifyManifest, type SnapshotManifest } from './manifest.js';
export { listSnapshots, readManifest, verifySnapshot, type SnapshotListing, type SnapshotVerification } from './inspect.js';
export { restoreSnapshot, readRestoreMarker, RESTORE_MARKER_FILE, type RestoreMarker, type RestoreResult } from './restore.js';
export { selectSnapshotsToDelete, DEFAULT_RETENTION, type RetentionPolicy } from './retention.js';
export { SnapshotScheduler, type SnapshotSchedulerOptions } from './scheduler.js';
export { benchmarkSnapshot, type SnapshotBenchmarkResult } from './benchmark.js';
export { snapshotName, parseSnapshotName } from './names.js';
