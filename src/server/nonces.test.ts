import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { NonceRegistry, randomNonce } from './nonces.js';

const KEY_A = 'a'.repeat(64);
const KEY_B = 'b'.repeat(64);

function codeOf(action: () => void): string {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof CasError);
    return error.code;
  }
  assert.fail('expected a CasError');
}

describe('NonceRegistry', () => {
  it('consumes a nonce once', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: randomNonce });
    const { nonce } = registry.issue(KEY_A);
    assert.match(nonce, /^[0-9a-f]{64}$/);
    registry.consume(nonce, KEY_A);
    assert.equal(codeOf(() => registry.consume(nonce, KEY_A)), 'EVIDENCE_REPLAYED');
  });

  it('rejects an unknown nonce', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: randomNonce });
    assert.equal(codeOf(() => registry.consume('00'.repeat(32), KEY_A)), 'NONCE_INVALID');
  });

  it('rejects a nonce of another key and burns it', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: randomNonce });
    const { nonce } = registry.issue(KEY_A);
    assert.equal(codeOf(() => registry.consume(nonce, KEY_B)), 'NONCE_INVALID');
    assert.equal(codeOf(() => registry.consume(nonce, KEY_A)), 'EVIDENCE_REPLAYED');
  });

  it('rejects an expired nonce', () => {
    let now = 1_000_000;
    const registry = new NonceRegistry({ ttlMs: 1000, generate: randomNonce, now: () => now });
    const { nonce, expiresAt } = registry.issue(KEY_A);
    assert.equal(expiresAt.getTime(), 1_001_000);
    now += 1000;
    assert.equal(codeOf(() => registry.consume(nonce, KEY_A)), 'NONCE_INVALID');
  });

  it('limits outstanding nonces', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: randomNonce, maxOutstanding: 2 });
    registry.issue(KEY_A);
    registry.issue(KEY_A);
    assert.equal(codeOf(() => registry.issue(KEY_A)), 'UNAVAILABLE');
  });

  it('limits outstanding nonces per client key', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: randomNonce, maxOutstandingPerClient: 2 });
    const first = registry.issue(KEY_A).nonce;
    registry.issue(KEY_A);
    assert.equal(codeOf(() => registry.issue(KEY_A)), 'UNAVAILABLE');
    registry.issue(KEY_B);
    registry.consume(first, KEY_A);
    registry.issue(KEY_A);
  });

  it('counts expired nonces out of the per-client limit', () => {
    let now = 1_000_000;
    const registry = new NonceRegistry({ ttlMs: 1000, generate: randomNonce, now: () => now, maxOutstandingPerClient: 1 });
    registry.issue(KEY_A);
    assert.equal(codeOf(() => registry.issue(KEY_A)), 'UNAVAILABLE');
    now += 1000;
    registry.issue(KEY_A);
  });

  it('reissues a pinned test nonce', () => {
    const pinned = Buffer.alloc(32, 7);
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: () => pinned });
    const first = registry.issue(KEY_A).nonce;
    registry.consume(first, KEY_A);
    const second = registry.issue(KEY_A).nonce;
    assert.equal(second, first);
    registry.consume(second, KEY_A);
  });

  it('rejects a generator shorter than 16 bytes', () => {
    const registry = new NonceRegistry({ ttlMs: 60_000, generate: () => Buffer.alloc(8) });
    assert.equal(codeOf(() => registry.issue(KEY_A)), 'INTERNAL');
  });
});
