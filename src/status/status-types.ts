import type { SnapshotAttempt } from './server-observer.js';

/**
 * Body of `GET /v1/status`, documented in docs/operations.md. A standby returns a smaller body with
 * `role: standby` (or `opening-database`) and `primary`; see src/ha/standby-server.ts.
 */
export interface CasStatus {
  role: 'unprovisioned' | 'primary' | 'standby' | 'opening-database';
  mode: 'simulation' | 'hardware';
  simulated: boolean;
  provisioned?: boolean;
  version?: string;
  /** `ready`: the instance serves requests as the primary; `not ready`: shutting down or lease not valid. */
  health?: 'ready' | 'not ready';
  platformId?: string;
  certificateSha256: string;
  /** Only for the CAS owner. */
  owner?: OwnerStatus;
  /** Standby only: the instance that holds the primary lease. */
  primary?: unknown;
  instance?: string;
}

export interface OwnerStatus {
  ownerKeyHash: string;
  provisionedAt: string;
  sessions: number;
  snapshots: SnapshotStatus;
  audit: { seq: number; hash: string; file: string };
  backupPlatforms: Array<{ platformId: string; evidenceType: string; registeredAt: string; registeredBy: string; thisInstance: boolean }>;
  lease: LeaseStatus;
  /** Set when this process started from a restored snapshot: changes after `snapshotCreatedAt` were lost. */
  restoredFrom?: { snapshot: string; snapshotCreatedAt: string; restoredAt: string; ageSecondsAtRestore: number };
  webhook: WebhookStatus | null;
}

export interface SnapshotStatus {
  enabled: boolean;
  directory: string;
  intervalSeconds: number;
  newest: { name: string; createdAt: string; ageSeconds: number } | null;
  /** The newest attempt of this process; null until the first snapshot interval has passed. */
  lastAttempt: SnapshotAttempt | null;
  /** Error message of listing the snapshot directory, when listing failed. */
  problem?: string;
}

export type LeaseStatus =
  | { kind: 'none' }
  | { kind: 'lockfile' | 'kubernetes'; error: string }
  | {
      kind: 'lockfile' | 'kubernetes';
      location: string;
      holder: string | null;
      holderPlatformId: string | null;
      heldByThisInstance: boolean;
      fencingToken: number | null;
      renewedAt: string | null;
      expiresAt: string | null;
    };

export interface WebhookStatus {
  url: string;
  queueLength: number;
  queueCapacity: number;
  queueFull: boolean;
  delivered: number;
  dropped: number;
  lastError: string | null;
}
