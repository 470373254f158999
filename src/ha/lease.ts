import { CasError } from '../errors/cas-error.js';

/** The instance that holds (or wants) the primary lease. */
export interface LeaseHolder {
  /** Unique per process: a pod name in Kubernetes, `<host>/<pid>/<random>` for local runs. */
  id: string;
  /** URL under which the instance serves clients, shown to clients that reach a standby. */
  url?: string;
  /** Platform id of the instance, so an operator can match the holder with `cas backup list`. */
  platformId?: string;
  /** Node (machine) name and process id, so a standby on the same node can detect that the holder died. */
  node?: string;
  pid?: number;
  /** `<boot id>/<pid namespace inode>`: where `pid` is meaningful. Linux only. */
  pidNamespace?: string;
}

/** One stored state of a lease, as read from its backend. */
export interface LeaseRecord {
  /** Undefined when the last holder released the lease. */
  holder: LeaseHolder | undefined;
  /**
   * Fencing token: increases by one each time the lease changes hands and never decreases, so a write
   * tagged with an older token comes from an instance that lost the lease.
   */
  token: number;
  /** Lease period the holder promised to renew within, in milliseconds. */
  durationMs: number;
  /** Opaque version; every successful write changes it (a file generation, a resourceVersion). */
  version: string;
  /** Wall-clock time of the last acquisition or renewal (informational: expiry never depends on it). */
  renewedAt: string;
}

/**
 * Storage of a lease with compare-and-swap writes. Each write names the version it read and fails (returns
 * undefined) when another writer changed the lease since, so two instances never both win. Two
 * implementations: a lock-file directory for local runs, a coordination.k8s.io/v1 Lease in a cluster.
 */
export interface LeaseStore {
  /** Human-readable location, for logs and messages (a directory, `Lease ns/name`). */
  readonly location: string;
  /** Reads the current record; undefined when no instance ever took the lease. */
  read(): Promise<LeaseRecord | undefined>;
  /**
   * Writes `next` if the lease is still at `expected` (undefined: the lease must not exist yet). Returns the
   * record as written, or undefined when another writer got there first.
   */
  compareAndSwap(expected: LeaseRecord | undefined, next: Omit<LeaseRecord, 'version'>): Promise<LeaseRecord | undefined>;
}

/** Timing of acquisition and renewal, every value in milliseconds. */
export interface LeaseTiming {
  durationMs: number;
  /** Interval between renewals of a held lease and between reads of a standby. */
  renewIntervalMs: number;
  /**
   * How long after the start of its last successful renewal the holder still treats the lease as valid.
   * It is shorter than `durationMs`, so the holder stops acknowledging writes before any standby can see the
   * lease as expired, even when the two clocks run at slightly different rates.
   */
  validForMs: number;
}

/** Timing derived from the lease period: renew four times per period, trust a renewal for 80 % of it. */
export function leaseTiming(durationMs: number): LeaseTiming {
  return { durationMs, renewIntervalMs: Math.max(50, Math.floor(durationMs / 4)), validForMs: Math.floor(durationMs * 0.8) };
}

/**
 * Monotonic milliseconds. `performance.now()` follows CLOCK_MONOTONIC, which keeps running while the
 * process is stopped (SIGSTOP), so a resumed holder measures how long it was away.
 * NOTE: CLOCK_MONOTONIC stops while the whole machine is suspended. A suspended host therefore resumes
 * believing its lease is younger than it is, until its next renewal attempt fails.
 */
export function monotonicNow(): number {
  return performance.now();
}

export interface LeaseElectorOptions {
  store: LeaseStore;
  self: LeaseHolder;
  timing: LeaseTiming;
  now?: () => number;
  /** Called with the new record whenever a read shows another holder (for NOT_PRIMARY messages). */
  onObserved?: (record: LeaseRecord | undefined) => void;
  /**
   * Returns true when the holder certainly cannot write any more (a dead process on this node). The lease
   * is then taken without waiting for it to expire. Without this, only expiry or a release frees the lease.
   */
  isHolderGone?: (holder: LeaseHolder) => boolean;
}

/**
 * Acquires and renews the primary lease over a LeaseStore, the way client-go's leader election does: a
 * standby never trusts timestamps written by another machine. It takes the lease only after the stored
 * record stayed unchanged for a whole lease period on its own monotonic clock, or after the holder released
 * it. The holder checks `isValid()` before acknowledging each write (fencing), since a renewal timer alone
 * cannot notice a process that was paused.
 */
export class LeaseElector {
  private readonly store: LeaseStore;
  private readonly self: LeaseHolder;
  private readonly timing: LeaseTiming;
  private readonly now: () => number;
  private readonly onObserved: ((record: LeaseRecord | undefined) => void) | undefined;
  private readonly isHolderGone: (holder: LeaseHolder) => boolean;

  /** Record this instance wrote last, while it is the lease holder. */
  private held: LeaseRecord | undefined;
  /** Monotonic time at which the last successful renewal (or the acquisition) started. */
  private heldSince = Number.NEGATIVE_INFINITY;
  /** Version of the last record read from another holder, and when that version was first read. */
  private observed: { version: string | undefined; at: number } | undefined;
  private lastRecord: LeaseRecord | undefined;

  constructor(options: LeaseElectorOptions) {
    this.store = options.store;
    this.self = options.self;
    this.timing = options.timing;
    this.now = options.now ?? monotonicNow;
    this.onObserved = options.onObserved;
    this.isHolderGone = options.isHolderGone ?? (() => false);
  }

  get holder(): LeaseHolder {
    return this.self;
  }

  /** The fencing token of the held lease; undefined while this instance does not hold it. */
  get token(): number | undefined {
    return this.held?.token;
  }

  /** The last record read or written, whichever instance it names. */
  get current(): LeaseRecord | undefined {
    return this.lastRecord;
  }

  /** True while this instance holds the lease and its last renewal is younger than `validForMs`. */
  isValid(): boolean {
    return this.held !== undefined && this.now() < this.heldSince + this.timing.validForMs;
  }

  /** Throws NOT_PRIMARY unless `isValid()`; call it right before a write is acknowledged. */
  assertValid(): void {
    if (this.isValid()) return;
    throw notPrimaryError(this.lastRecord, this.self, this.held === undefined ? 'standby' : 'expired');
  }

  /**
   * Makes one acquisition attempt: reads the lease and takes it when it is free, released, already ours, or
   * unchanged for a whole lease period since this instance first read it. Returns true when this instance
   * is now the holder.
   */
  async tryAcquire(): Promise<boolean> {
    const started = this.now();
    const record = await this.store.read();
    this.remember(record);

    if (record !== undefined && record.holder !== undefined && record.holder.id !== this.self.id && !this.isHolderGone(record.holder)) {
      if (this.observed === undefined || this.observed.version !== record.version) {
        this.observed = { version: record.version, at: started };
        return false;
      }
      if (started < this.observed.at + record.durationMs) return false;
    }

    // The token grows only when the lease changes hands; re-taking our own lapsed lease keeps it.
    let token = 1;
    if (record !== undefined) token = record.holder?.id === this.self.id ? record.token : record.token + 1;
    const written = await this.store.compareAndSwap(record, this.nextRecord(token));
    if (written === undefined) {
      this.observed = undefined;
      return false;
    }
    this.held = written;
    this.heldSince = started;
    this.observed = undefined;
    this.remember(written);
    return true;
  }

  /**
   * Renews the held lease. Returns false (and drops the lease locally) when the stored record is no longer
   * ours, because another instance took it while this one could not renew.
   */
  async renew(): Promise<boolean> {
    const held = this.held;
    if (held === undefined) return false;
    const started = this.now();
    const record = await this.store.read();
    this.remember(record);
    if (record === undefined || record.version !== held.version || record.holder?.id !== this.self.id) {
      this.lose();
      return false;
    }
    const written = await this.store.compareAndSwap(record, this.nextRecord(held.token));
    if (written === undefined) {
      this.lose();
      return false;
    }
    if (this.held !== held) return false;
    this.held = written;
    this.heldSince = started;
    this.remember(written);
    return true;
  }

  /** Releases a held lease, so a standby takes over without waiting a lease period. */
  async release(): Promise<void> {
    const held = this.held;
    this.lose();
    if (held === undefined) return;
    const record = await this.store.read();
    if (record?.version !== held.version) return;
    await this.store.compareAndSwap(record, { holder: undefined, token: held.token, durationMs: held.durationMs, renewedAt: new Date().toISOString() });
  }

  /** Drops the held lease locally without writing, so `isValid()` is false from now on. */
  lose(): void {
    this.held = undefined;
    this.heldSince = Number.NEGATIVE_INFINITY;
  }

  private nextRecord(token: number): Omit<LeaseRecord, 'version'> {
    return { holder: { ...this.self }, token, durationMs: this.timing.durationMs, renewedAt: new Date().toISOString() };
  }

  private remember(record: LeaseRecord | undefined): void {
    const changed = record?.version !== this.lastRecord?.version;
    this.lastRecord = record;
    if (changed && record?.holder?.id !== this.self.id) this.onObserved?.(record);
  }
}

/** Builds the NOT_PRIMARY error that names the current primary, as standby and fenced instances return it. */
export function notPrimaryError(record: LeaseRecord | undefined, self: LeaseHolder, state: 'standby' | 'expired' | 'starting'): CasError {
  const primary = record?.holder !== undefined && record.holder.id !== self.id ? record.holder : undefined;

  let primaryHint = 'no primary holds the lease right now; retry in a few seconds';
  if (primary !== undefined) {
    const location = primary.url === undefined ? '' : ` at ${primary.url}`;
    primaryHint = `the primary is ${primary.id}${location}; send writes there or retry after a failover`;
  }

  let stateMessage: string;
  if (state === 'standby') {
    stateMessage = `this CAS instance (${self.id}) is a standby and does not accept requests`;
  } else if (state === 'starting') {
    stateMessage = `this CAS instance (${self.id}) holds the lease but is still opening the database`;
  } else {
    stateMessage = `this CAS instance (${self.id}) could not renew its primary lease in time and stopped accepting requests`;
  }

  return new CasError('NOT_PRIMARY', `${stateMessage}; ${primaryHint}`, {
    details: { instance: self.id, primary: primary ?? null, leaseToken: record?.token ?? null },
  });
}
