import { randomBytes } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';

/** Produces the bytes of a new nonce. The server factory accepts another one only for tests. */
export type NonceGenerator = () => Buffer;

export const NONCE_BYTES = 32;

export const randomNonce: NonceGenerator = () => randomBytes(NONCE_BYTES);

/**
 * Single-use, expiring nonces for configuration requests. A nonce is issued to one client key and consumed
 * by the first request that presents it, whatever the outcome, so evidence that carries it cannot be
 * replayed. The registry lives in memory: after a restart every earlier nonce is unknown, which also
 * rejects replays.
 */
export class NonceRegistry {
  private readonly issued = new Map<string, { expiresAt: number; clientKeyHash: string }>();
  private readonly consumed = new Map<string, number>();
  /** Outstanding (issued, not yet consumed or expired) nonces per client key. */
  private readonly outstanding = new Map<string, number>();

  constructor(
    private readonly options: { ttlMs: number; generate: NonceGenerator; now?: () => number; maxOutstanding?: number; maxOutstandingPerClient?: number },
  ) {}

  /** Issues a nonce for the client key; returns it as lower-case hex with its expiry time. */
  issue(clientKeyHash: string): { nonce: string; expiresAt: Date } {
    this.prune();
    // A client that requests nonces without using them reaches its own limit long before the global one,
    // so it cannot stop issuing for everyone: it took one client 8 s to reach a global limit of 10,000.
    // NOTE: a client with enough keys (each a new TLS connection) still reaches the global limit.
    const perClient = this.options.maxOutstandingPerClient ?? 32;
    if ((this.outstanding.get(clientKeyHash) ?? 0) >= perClient) {
      throw new CasError('UNAVAILABLE', `this client key has ${perClient} outstanding nonces, the limit; use them or retry after ${this.options.ttlMs / 1000} s`);
    }
    const limit = this.options.maxOutstanding ?? 100_000;
    if (this.issued.size >= limit) {
      throw new CasError('UNAVAILABLE', `too many outstanding nonces (${limit}); retry after ${this.options.ttlMs / 1000} s`);
    }

    const nonce = this.options.generate().toString('hex');
    if (nonce.length < 32) throw new CasError('INTERNAL', 'the nonce generator returned fewer than 16 bytes');
    const expiresAt = this.now() + this.options.ttlMs;
    // Only a pinned test generator repeats a value; issuing it again makes it valid once more.
    this.consumed.delete(nonce);
    this.forget(nonce);
    this.issued.set(nonce, { expiresAt, clientKeyHash });
    this.outstanding.set(clientKeyHash, (this.outstanding.get(clientKeyHash) ?? 0) + 1);
    return { nonce, expiresAt: new Date(expiresAt) };
  }

  /**
   * Consumes a nonce; throws EVIDENCE_REPLAYED if it was used before, NONCE_INVALID if it is unknown,
   * expired or was issued to another client key.
   */
  consume(nonce: string, clientKeyHash: string): void {
    this.prune();
    if (this.consumed.has(nonce)) {
      throw new CasError('EVIDENCE_REPLAYED', 'the nonce in this request was already used; request a new nonce and new evidence');
    }
    const entry = this.issued.get(nonce);
    if (entry === undefined) {
      throw new CasError('NONCE_INVALID', 'unknown or expired nonce; request a new nonce from POST /v1/nonces');
    }
    this.forget(nonce);
    this.consumed.set(nonce, entry.expiresAt);
    if (entry.clientKeyHash !== clientKeyHash) {
      throw new CasError('NONCE_INVALID', 'the nonce was issued to another client key; request it over the same TLS client certificate');
    }
    if (entry.expiresAt <= this.now()) {
      throw new CasError('NONCE_INVALID', 'the nonce has expired; request a new one');
    }
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /**
   * Forgets expired nonces; a consumed nonce is kept until it would have expired, so replays stay detected.
   * Both maps are in insertion order, which is close to expiry order, so the scan stops at the first entry
   * that is still valid instead of visiting every outstanding nonce on every request. A consumed nonce that
   * stays a little longer is still rejected.
   */
  private prune(): void {
    const now = this.now();
    for (const [nonce, entry] of this.issued) {
      if (entry.expiresAt > now) break;
      this.forget(nonce);
    }
    for (const [nonce, expiresAt] of this.consumed) {
      if (expiresAt > now) break;
      this.consumed.delete(nonce);
    }
  }

  /** Removes an issued nonce and counts it out of its client's outstanding nonces. */
  private forget(nonce: string): void {
    const entry = this.issued.get(nonce);
    if (entry === undefined) return;
    this.issued.delete(nonce);
    const count = (this.outstanding.get(entry.clientKeyHash) ?? 1) - 1;
    if (count <= 0) this.outstanding.delete(entry.clientKeyHash);
    else this.outstanding.set(entry.clientKeyHash, count);
  }
}
