import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerSettings } from '../config/settings.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { createCasServer, type CasServer } from '../server/cas-server.js';
import { openPlatform } from '../store/index.js';
import { addLeaseFencing } from './fencing.js';
import { LeaseElector, leaseTiming, notPrimaryError, type LeaseHolder, type LeaseRecord, type LeaseStore } from './lease.js';
import { startStandbyServer, type StandbyServer } from './standby-server.js';

export interface HighAvailabilityOptions {
  settings: ServerSettings;
  logger: Logger;
  store: LeaseStore;
  /** Lease period in milliseconds. */
  leaseDurationMs: number;
  /** Unique id of this instance; default `<host>/<pid>/<random>`. In Kubernetes, the pod name. */
  instanceId?: string;
  /** Called once when the CAS cannot go on (a snapshot failed, the database cannot be opened at all). */
  onFatal?: (error: CasError) => void;
  /**
   * Take the lease at once from a holder with the same node name, in the same PID namespace, whose
   * process no longer exists (lock-file leases only). Default false: wait for expiry.
   */
  takeOverFromDeadLocalHolder?: boolean;
  /** Runs once, the first time this instance holds the lease and before it opens the database. */
  beforeFirstOpen?: () => Promise<void>;
}

export interface HighAvailabilityCas {
  /** URL of the port this instance listens on, as standby first and as primary later. */
  readonly url: string;
  readonly instanceId: string;
  /** Current role, for tests and logs. */
  role(): 'standby' | 'opening-database' | 'primary';
  /** Stops serving: releases the lease if held (a standby then takes over at once) and closes the database. */
  close(reason?: 'signal' | 'shutdown' | 'fatal'): Promise<void>;
}

/** Background renewal of a held lease. */
interface Renewal {
  /** Resolves when a renewal finds the lease lost. */
  lost: Promise<void>;
  isLost(): boolean;
  stop(): Promise<void>;
}

/** Interval between attempts to open a database that the previous primary still has locked. */
const DATABASE_RETRY_MS = 250;

/**
 * Runs `cas serve` with a primary lease. The instance starts as a standby on its port: it returns health
 * results and evidence about itself and rejects API requests with 503 NOT_PRIMARY. Once it holds the
 * lease it opens the database (retrying while the previous primary still holds SQLite's lock), switches
 * the port over to the CAS server and renews the lease. If it cannot renew in time, it closes the database
 * without writing and becomes a standby again. Every API request is fenced by the lease, see fencing.ts.
 */
export async function startHighAvailableCas(options: HighAvailabilityOptions): Promise<HighAvailabilityCas> {
  const { settings, logger } = options;
  const platform = await openPlatform({ mode: settings.mode, platformDir: settings.platformDir, logger });
  const instanceId = options.instanceId ?? `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
  const timing = leaseTiming(options.leaseDurationMs);
  const log = logger.child({ component: 'ha', instance: instanceId });

  // The port is fixed before the lease holder record is written, so NOT_PRIMARY can name the primary's URL.
  let standby: StandbyServer | undefined;
  let phase: 'standby' | 'opening-database' | 'primary' = 'standby';
  const node = process.env['CAS_NODE_NAME'] ?? hostname();
  const pidNamespace = currentPidNamespace();
  const self: LeaseHolder = { id: instanceId, platformId: platform.id, node, pid: process.pid, ...(pidNamespace === undefined ? {} : { pidNamespace }) };
  const elector = new LeaseElector({
    store: options.store,
    self,
    timing,
    onObserved: (record) => logObserved(log, record),
    ...(options.takeOverFromDeadLocalHolder === true && pidNamespace !== undefined
      ? { isHolderGone: (holder: LeaseHolder) => holder.node === node && holder.pidNamespace === pidNamespace && holder.pid !== undefined && !processExists(holder.pid) }
      : {}),
  });
  const notPrimary = (): CasError => notPrimaryError(elector.current, self, phase === 'opening-database' ? 'starting' : 'standby');

  standby = await startStandbyServer({ settings, port: settings.listen.port, platform, instanceId, logger: log, notPrimary, phase: () => (phase === 'primary' ? 'standby' : phase) });
  const port = standby.port;
  const url = standby.url;
  self.url = url;
  log.info({ lease: options.store.location, leaseDurationMs: timing.durationMs, url }, 'waiting for the primary lease');

  let stopping = false;
  let server: CasServer | undefined;
  let beforeFirstOpen = options.beforeFirstOpen;
  const wake = new AbortController();

  const stopRequested = new Promise<void>((resolve) => wake.signal.addEventListener('abort', () => resolve(), { once: true }));

  const runLoop = async (): Promise<void> => {
    while (!stopping) {
      await acquireLease();
      if (stopping) return;
      phase = 'opening-database';
      const renewal = startRenewal();
      try {
        await runBeforeFirstOpen(renewal);
        const opened = await openWhileHoldingLease(renewal);
        if (opened === undefined) continue;
        if (renewal.isLost() || !elector.isValid()) {
          log.warn({ fencingToken: elector.token }, 'the lease lapsed while the database was being opened; closing it again without writing');
          elector.lose();
          await opened.close('lease-lost');
          continue;
        }

        server = opened;
        await standby?.close();
        standby = undefined;
        addLeaseFencing(server.app, { check: fenceCheck, bodyLimitBytes: settings.bodyLimitBytes });
        await server.listen();
        phase = 'primary';
        log.info({ fencingToken: elector.token, url }, 'serving as primary');

        await Promise.race([renewal.lost, stopRequested]);
        if (stopping) return;
        log.error({ fencingToken: elector.current?.token, primary: elector.current?.holder ?? null }, 'lost the primary lease; closing the database without writing and becoming a standby');
        elector.lose();
        const closing = server;
        server = undefined;
        await closing.close('lease-lost');
      } finally {
        await renewal.stop();
        if (!stopping) phase = 'standby';
      }
      standby ??= await startStandbyServer({ settings, port, platform, instanceId, logger: log, notPrimary, phase: () => (phase === 'primary' ? 'standby' : phase) });
    }
  };

  const fenceCheck = (): CasError | undefined => (elector.isValid() ? undefined : notPrimaryError(elector.current, self, 'expired'));

  const acquireLease = async (): Promise<void> => {
    while (!stopping) {
      try {
        if (await elector.tryAcquire()) {
          log.info({ fencingToken: elector.token, lease: options.store.location }, 'acquired the primary lease');
          return;
        }
      } catch (error) {
        log.warn({ err: error, lease: options.store.location }, 'reading or writing the lease failed; retrying');
      }
      await pause(timing.renewIntervalMs);
    }
  };

  /**
   * Renews the held lease in the background, also while the database is being opened, until the lease is
   * lost or `stop()` is called.
   */
  const startRenewal = (): Renewal => {
    const cancel = new AbortController();
    let lost = false;
    let signalLost!: () => void;
    const lostPromise = new Promise<void>((resolve) => {
      signalLost = resolve;
    });
    const loop = (async () => {
      while (!stopping && !cancel.signal.aborted) {
        await pause(timing.renewIntervalMs, cancel.signal);
        if (stopping || cancel.signal.aborted) return;
        if (!(await renewOnce())) {
          lost = true;
          signalLost();
          return;
        }
      }
    })();
    return {
      lost: lostPromise,
      isLost: () => lost,
      stop: async () => {
        cancel.abort();
        await loop;
      },
    };
  };

  /** Runs `beforeFirstOpen` once; on failure stops renewing, releases the lease and rethrows. */
  const runBeforeFirstOpen = async (renewal: Renewal): Promise<void> => {
    if (beforeFirstOpen === undefined) return;
    const run = beforeFirstOpen;
    beforeFirstOpen = undefined;
    try {
      await run();
    } catch (error) {
      await giveUpLease(renewal);
      throw error;
    }
  };

  /** Opens the CAS server, retrying while the database is locked; undefined when the lease is lost first. */
  const openWhileHoldingLease = async (renewal: Renewal): Promise<CasServer | undefined> => {
    let lockedSince: number | undefined;
    while (!stopping && !renewal.isLost()) {
      try {
        return await createCasServer({ settings, logger, databaseBusyTimeoutMs: 0, isPrimary: () => elector.isValid(), ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }) });
      } catch (error) {
        if (!isDatabaseLocked(error)) {
          log.error({ err: error }, 'opening the database failed; releasing the primary lease');
          await giveUpLease(renewal);
          throw error;
        }
        if (lockedSince === undefined) {
          lockedSince = performance.now();
          log.warn({ dataDir: settings.dataDir }, 'holding the lease, but the previous primary still has the database locked; retrying until it closes the database');
        }
      }
      await pause(DATABASE_RETRY_MS);
    }
    return undefined;
  };

  /** Stops renewing, then releases, so no renewal can rewrite the lease after the release. */
  const giveUpLease = async (renewal: Renewal): Promise<void> => {
    await renewal.stop();
    await elector.release().catch((error: unknown) => log.warn({ err: error }, 'releasing the lease failed'));
  };

  /** One renewal; false when the lease is lost (taken by another instance, or not renewed in time). */
  const renewOnce = async (): Promise<boolean> => {
    try {
      if (await elector.renew()) return true;
      return false;
    } catch (error) {
      // A failing store (API server unreachable) is not a lost lease yet: the lease stays valid until
      // validForMs after the last successful renewal, and fencing rejects requests after that.
      const valid = elector.isValid();
      log.warn({ err: error, lease: options.store.location, stillValid: valid }, 'renewing the lease failed');
      return valid;
    }
  };

  const pause = async (ms: number, cancel?: AbortSignal): Promise<void> => {
    try {
      await sleep(ms, undefined, { signal: cancel === undefined ? wake.signal : AbortSignal.any([wake.signal, cancel]) });
    } catch {
      // Aborted by close() or by the caller: the loops check their flags next.
    }
  };

  const loopDone = runLoop().catch((error: unknown) => {
    const casError = isCasError(error) ? error : new CasError('INTERNAL', `high-availability loop failed: ${String(error)}`, { cause: error });
    options.onFatal?.(casError);
  });

  let closed: Promise<void> | undefined;
  return {
    url,
    instanceId,
    role: () => phase,
    close(reason = 'shutdown') {
      closed ??= (async () => {
        stopping = true;
        wake.abort();
        await loopDone;
        const current = server;
        server = undefined;
        if (current !== undefined) await current.close(reason);
        await elector.release().catch((error: unknown) => log.warn({ err: error }, 'releasing the lease failed'));
        await standby?.close();
        standby = undefined;
      })();
      return closed;
    },
  };
}

/**
 * Identifies the PID namespace of this process across reboots: the kernel's boot id and the namespace's
 * inode. Two processes with the same value see the same process ids, so a dead pid of the holder means a
 * dead holder. Containers on one host have different PID namespaces (and usually the same host name), so
 * a recreated pod never mistakes an old pod's pid for its own. Undefined off Linux.
 */
function currentPidNamespace(): string | undefined {
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const namespace = readlinkSync('/proc/self/ns/pid');
    return `${bootId}/${namespace}`;
  } catch {
    return undefined;
  }
}

/** True when a process with this id exists (EPERM: it exists but belongs to another user). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isDatabaseLocked(error: unknown): boolean {
  if (!isCasError(error, 'DATABASE_ERROR')) return false;
  return (error.cause as { code?: unknown } | undefined)?.code === 'SQLITE_BUSY';
}

function logObserved(log: Logger, record: LeaseRecord | undefined): void {
  if (record?.holder === undefined) return;
  log.debug({ primary: record.holder, fencingToken: record.token }, 'observed the primary lease');
}
