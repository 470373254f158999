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

  constructor(
    private readonly options: { ttlMs: number; generate: NonceGenerator; now?: () => number; maxOutstanding?: number },
  ) {}

  /** Issues a nonce for the client key; returns it as lower-case hex with its expiry time. */
  issue(clientKeyHash: string): { nonce: string; expiresAt: Date } {
    this.prune();
    // NOTE: the limit is global, so one client that requests nonces without using them can make issuing
    // fail for everyone until its nonces expire (nonceTtlSeconds).
    const limit = this.options.maxOutstanding ?? 10_000;
    if (this.issued.size >= limit) {
      throw new CasError('UNAVAILABLE', `too many outstanding nonces (${limit}); retry after ${this.options.ttlMs / 1000} s`);
    }

    const nonce = this.options.generate().toString('hex');
    if (nonce.length < 32) throw new CasError('INTERNAL', 'the nonce generator returned fewer than 16 bytes');
    const expiresAt = this.now() + this.options.ttlMs;
    // Only a pinned test generator repeats a value; issuing it again makes it valid once more.
    this.consumed.delete(nonce);
    this.issued.set(nonce, { expiresAt, clientKeyHash });
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
    this.issued.delete(nonce);
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

  /** Forgets expired nonces; a consumed nonce is kept until it would have expired, so replays stay detected. */
  private prune(): void {
    const now = this.now();
    for (const [nonce, entry] of this.issued) if (entry.expiresAt <= now) this.issued.delete(nonce);
    for (const [nonce, expiresAt] of this.consumed) if (expiresAt <= now) this.consumed.delete(nonce);
  }
}
