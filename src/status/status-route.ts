import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AuditHead } from '../audit/index.js';
import type { ServerSettings } from '../config/settings.js';
import { isCasError } from '../errors/cas-error.js';
import type { LeaseStore } from '../ha/lease.js';
import type { CasApp } from '../server/app-types.js';
import { requireClientKey } from '../server/client-identity.js';
import { invalidRequest } from '../server/http-errors.js';
import type { CasOwner } from '../server/provisioning.js';
import { listSnapshots } from '../snapshots/inspect.js';
import type { CasDatabase } from '../store/index.js';
import { certificateFingerprint } from '../tls/certificates.js';
import type { CasStatus, LeaseStatus, SnapshotStatus } from './status-types.js';
import type { ServerObserver } from './server-observer.js';

export interface StatusRouteContext {
  settings: ServerSettings;
  version: string;
  db: CasDatabase;
  platformId: string;
  casCertificatePem: string;
  owner: () => CasOwner | undefined;
  auditHead: () => AuditHead;
  /** True while this instance serves as primary and is not shutting down (the readiness result). */
  serving: () => boolean;
  observer: ServerObserver;
}

const noQuery = z.strictObject({});

/**
 * Registers `GET /v1/status`. Every caller, with or without a client certificate, gets the public part:
 * role, mode, version, health and the certificate fingerprint, which the health endpoints and the TLS
 * handshake reveal anyway. The CAS owner (matched by the key of the TLS client certificate) also gets
 * `owner`: session count, snapshots, audit head, backup platforms, lease and webhook. Documented in
 * docs/operations.md.
 */
export function registerStatusRoute(app: CasApp, context: StatusRouteContext): void {
  let leaseStore: Promise<LeaseStore> | undefined;
  const readLease = async (): Promise<LeaseStatus> => {
    const { settings } = context;
    if (settings.lease === 'none') return { kind: 'none' };
    try {
      // Loaded lazily: the high-availability module imports the server, so a static import would be a cycle.
      leaseStore ??= import('../ha/serve-with-lease.js').then(({ createLeaseStore }) => createLeaseStore(settings));
      const store = await leaseStore;
      const record = await store.read();
      const holder = record?.holder;
      return {
        kind: settings.lease,
        location: store.location,
        holder: holder?.id ?? null,
        holderPlatformId: holder?.platformId ?? null,
        // The server serves only while its elector holds a valid lease, so serving means holding it.
        heldByThisInstance: holder !== undefined && context.serving(),
        fencingToken: record?.token ?? null,
        renewedAt: record?.renewedAt ?? null,
        // Informational: holders and standbys time the lease with monotonic clocks, not with this wall-clock time.
        expiresAt: record === undefined || holder === undefined ? null : new Date(Date.parse(record.renewedAt) + record.durationMs).toISOString(),
      };
    } catch (error) {
      leaseStore = undefined;
      return { kind: settings.lease, error: error instanceof Error ? error.message : String(error) };
    }
  };

  app.get('/v1/status', async (request) => {
    const parsed = noQuery.safeParse(request.query ?? {});
    if (!parsed.success) throw invalidRequest('query', parsed.error);

    const owner = context.owner();
    const status: CasStatus = {
      role: owner === undefined ? 'unprovisioned' : 'primary',
      mode: context.settings.mode,
      simulated: context.settings.mode === 'simulation',
      provisioned: owner !== undefined,
      version: context.version,
      health: context.serving() && context.db.isOpen ? 'ready' : 'not ready',
      platformId: context.platformId,
      certificateSha256: certificateFingerprint(context.casCertificatePem),
    };
    if (owner === undefined || callerKeyHash(request) !== owner.keyHash) return status;

    return {
      ...status,
      owner: {
        ownerKeyHash: owner.keyHash,
        provisionedAt: owner.provisionedAt,
        sessions: context.db.countSessions(),
        snapshots: await snapshotStatus(context),
        audit: { ...context.auditHead(), file: context.settings.auditLog },
        backupPlatforms: context.db.listPlatforms().map((entry) => ({
          platformId: entry.platformId,
          evidenceType: entry.evidenceType,
          registeredAt: entry.registeredAt,
          registeredBy: entry.registeredBy,
          thisInstance: entry.platformId === context.platformId,
        })),
        lease: await readLease(),
        ...(context.observer.restoredFrom() === undefined ? {} : { restoredFrom: context.observer.restoredFrom()! }),
        webhook: context.observer.webhookStatus(),
      },
    } satisfies CasStatus;
  });
}

/** Key hash of the request's client certificate, or undefined when it sent none. */
function callerKeyHash(request: FastifyRequest): string | undefined {
  try {
    return requireClientKey(request).keyHash;
  } catch (error) {
    if (isCasError(error, 'CLIENT_CERT_MISSING')) return undefined;
    throw error;
  }
}

async function snapshotStatus(context: StatusRouteContext): Promise<SnapshotStatus> {
  const { settings, observer } = context;
  let newest: SnapshotStatus['newest'] = null;
  let problem: string | undefined;
  try {
    const found = (await listSnapshots(settings.snapshotDir)).find((entry) => entry.status === 'valid' && entry.createdAt !== undefined);
    if (found?.createdAt !== undefined) {
      newest = { name: found.name, createdAt: found.createdAt, ageSeconds: Math.max(0, Math.round((Date.now() - Date.parse(found.createdAt)) / 1000)) };
    }
  } catch (error) {
    if (!isCasError(error, 'NOT_FOUND')) problem = error instanceof Error ? error.message : String(error);
  }
  return {
    enabled: settings.snapshotsEnabled,
    directory: settings.snapshotDir,
    intervalSeconds: settings.snapshotIntervalSeconds,
    newest,
    lastAttempt: observer.lastSnapshotAttempt ?? null,
    ...(problem === undefined ? {} : { problem }),
  };
}
