import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LruCache } from './lru.js';

describe('LruCache', () => {
  it('keeps at most its capacity', () => {
    const cache = new LruCache<number, string>(3);
    for (let i = 0; i < 10; i++) cache.set(i, `v${i}`);
    assert.equal(cache.size, 3);
    assert.equal(cache.get(6), undefined);
    assert.equal(cache.get(7), 'v7');
    assert.equal(cache.get(8), 'v8');
    assert.equal(cache.get(9), 'v9');
  });

  it('evicts the least recently used entry', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    assert.equal(cache.get('a'), 1);
    cache.set('c', 3);
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 1);
    assert.equal(cache.get('c'), 3);
  });

  it('replaces a value without evicting', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('a', 10);
    assert.equal(cache.size, 2);
    assert.equal(cache.get('a'), 10);
    assert.equal(cache.get('b'), 2);
  });

  it('getOrCompute computes once per key', () => {
    const cache = new LruCache<string, object>(4);
    let calls = 0;
    const compute = (): object => {
      calls += 1;
      return {};
    };
    const first = cache.getOrCompute('k', compute);
    const second = cache.getOrCompute('k', compute);
    assert.equal(first, second);
    assert.equal(calls, 1);
  });

  it('getOrCompute stores nothing when compute throws', () => {
    const cache = new LruCache<string, number>(4);
    assert.throws(() => cache.getOrCompute('k', () => {
      throw new Error('parse failed');
    }), /parse failed/);
    assert.equal(cache.size, 0);
    assert.equal(cache.getOrCompute('k', () => 7), 7);
  });

  it('rejects a capacity below one', () => {
    assert.throws(() => new LruCache(0), RangeError);
    assert.throws(() => new LruCache(1.5), RangeError);
  });
});
