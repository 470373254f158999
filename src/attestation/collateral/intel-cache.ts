import { CasError, isCasError } from '../../errors/cas-error.js';
import type { Logger } from '../../logging/logger.js';
import { parseSignedJson, qeIdentitySchema, tcbInfoSchema, type IntelCollateral } from '../intel/collateral.js';
import { parseCrl } from '../x509.js';
import type { CollateralStore } from './file-store.js';
import type { CollateralKey, IntelCollateralSource } from './pcs-client.js';

/** The collateral item that expires first, and when. */
export interface CollateralExpiry {
  item: string;
  expiresAt: Date;
}

/** Returns the earliest `nextUpdate` among TCB Info, QE identity and both CRLs. */
export function collateralExpiry(collateral: IntelCollateral): CollateralExpiry {
  const tcbInfo = parseSignedJson(collateral.tcbInfo, tcbInfoSchema, 'TCB Info');
  const qeIdentity = parseSignedJson(collateral.qeIdentity, qeIdentitySchema, 'QE identity');
  const items: CollateralExpiry[] = [
    { item: `TCB Info for FMSPC ${tcbInfo.fmspc}`, expiresAt: new Date(tcbInfo.nextUpdate) },
    { item: `QE identity ${qeIdentity.id}`, expiresAt: new Date(qeIdentity.nextUpdate) },
  ];
  for (const [item, der] of [['PCK CRL', collateral.pckCrl], ['root CA CRL', collateral.rootCaCrl]] as const) {
    const nextUpdate = parseCrl(der).nextUpdate;
    if (nextUpdate !== undefined) items.push({ item, expiresAt: nextUpdate });
  }
  return items.reduce((earliest, candidate) => (candidate.expiresAt < earliest.expiresAt ? candidate : earliest));
}

export interface IntelCollateralCacheOptions {
  /** The clock; tests pass a fixed one. */
  now?: () => Date;
  /**
   * How long fetched collateral is served before a refresh is attempted, in milliseconds. A failed refresh
   * keeps serving the cached copy until it expires. Default: 24 hours, and never past the expiry.
   */
  refreshAfterMs?: number;
  /** After a failed refresh, how long the cached copy is served before the next attempt, in milliseconds. Default: 60 seconds. */
  retryAfterMs?: number;
  /** Keeps fetched collateral across restarts; a stored copy is loaded on the first request for its key. */
  store?: CollateralStore;
  logger?: Logger;
}

interface Entry {
  collateral: IntelCollateral;
  expiry: CollateralExpiry;
  refreshAt: Date;
}

/**
 * Caches Intel collateral by TEE type, FMSPC and PCK CA. A cached copy is served until its refresh time,
 * and then refetched. If the fetch fails (network down, PCS error), the cached copy is still served until
 * its earliest `nextUpdate`. Past that, requests fail with COLLATERAL_EXPIRED naming the item.
 */
export class IntelCollateralCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<IntelCollateral>>();
  private readonly now: () => Date;
  private readonly refreshAfterMs: number;
  private readonly retryAfterMs: number;

  constructor(
    private readonly source: IntelCollateralSource,
    private readonly options: IntelCollateralCacheOptions = {},
  ) {
    this.now = options.now ?? (() => new Date());
    this.refreshAfterMs = options.refreshAfterMs ?? 24 * 60 * 60 * 1000;
    this.retryAfterMs = options.retryAfterMs ?? 60 * 1000;
  }

  async get(key: CollateralKey): Promise<IntelCollateral> {
    const id = `${key.teeType}/${key.fmspc.toUpperCase()}/${key.ca}`;
    const entry = this.entries.get(id);
    if (entry !== undefined && this.now() < entry.refreshAt) return entry.collateral;

    // Concurrent requests for the same key share one fetch.
    let pending = this.inflight.get(id);
    if (pending === undefined) {
      pending = (async () => this.refresh(id, key, entry ?? (await this.loadStored(id, key))))().finally(() => this.inflight.delete(id));
      this.inflight.set(id, pending);
    }
    return pending;
  }

  /** Loads a stored copy as a cache entry that is due for refresh; a damaged copy is logged and skipped. */
  private async loadStored(id: string, key: CollateralKey): Promise<Entry | undefined> {
    if (this.options.store === undefined) return undefined;
    try {
      const collateral = await this.options.store.load(id);
      if (collateral === undefined) return undefined;
      const entry = { collateral, expiry: collateralExpiry(collateral), refreshAt: this.now() };
      this.entries.set(id, entry);
      return entry;
    } catch (error) {
      this.options.logger?.warn({ ...key, err: (error as Error).message }, 'stored collateral is unreadable; ignoring it');
      return undefined;
    }
  }

  private async refresh(id: string, key: CollateralKey, cached: Entry | undefined): Promise<IntelCollateral> {
    let collateral: IntelCollateral;
    let expiry: CollateralExpiry;
    try {
      collateral = await this.source.fetchCollateral(key);
      expiry = collateralExpiry(collateral);
    } catch (error) {
      return this.serveStale(key, cached, error);
    }
    const now = this.now();
    if (now > expiry.expiresAt) {
      throw new CasError('COLLATERAL_EXPIRED', `the collateral source served expired collateral: ${expiry.item} expired at ${expiry.expiresAt.toISOString()}`, {
        details: { ...key, item: expiry.item, expiredAt: expiry.expiresAt.toISOString() },
      });
    }
    const refreshAt = new Date(Math.min(expiry.expiresAt.getTime(), now.getTime() + this.refreshAfterMs));
    this.entries.set(id, { collateral, expiry, refreshAt });
    this.options.logger?.info({ ...key, expiresAt: expiry.expiresAt.toISOString(), item: expiry.item }, 'fetched Intel collateral');
    await this.options.store?.save(id, collateral).catch((error: unknown) => {
      this.options.logger?.warn({ ...key, err: (error as Error).message }, 'storing collateral failed; it stays cached in memory');
    });
    return collateral;
  }

  private serveStale(key: CollateralKey, cached: Entry | undefined, error: unknown): IntelCollateral {
    const reason = error instanceof Error ? error.message : String(error);
    if (cached === undefined) {
      if (isCasError(error)) throw error;
      throw new CasError('COLLATERAL_UNAVAILABLE', `fetching collateral for FMSPC ${key.fmspc} failed: ${reason}`, { cause: error });
    }
    const now = this.now();
    if (now <= cached.expiry.expiresAt) {
      cached.refreshAt = new Date(Math.min(cached.expiry.expiresAt.getTime(), now.getTime() + this.retryAfterMs));
      this.options.logger?.warn({ ...key, err: reason, expiresAt: cached.expiry.expiresAt.toISOString() }, 'collateral refresh failed; serving the cached copy');
      return cached.collateral;
    }
    throw new CasError(
      'COLLATERAL_EXPIRED',
      `cached collateral for ${key.teeType.toUpperCase()} FMSPC ${key.fmspc} (${key.ca} CA) expired: ${cached.expiry.item} expired at ${cached.expiry.expiresAt.toISOString()}, and refreshing failed: ${reason}`,
      { cause: error, details: { ...key, item: cached.expiry.item, expiredAt: cached.expiry.expiresAt.toISOString() } },
    );
  }
}
