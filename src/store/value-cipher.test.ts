import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { decryptValue, encryptValue, VALUE_FORMAT_VERSION, VALUE_NONCE_LENGTH, VALUE_OVERHEAD, VALUE_TAG_LENGTH } from './value-cipher.js';

const key = randomBytes(32);
const aad = Buffer.from('cas/v1/sessions/00ff');

function assertDecryptionFails(fn: () => unknown): void {
  assert.throws(fn, (error: unknown) => isCasError(error, 'DECRYPTION_FAILED'));
}

describe('encryptValue', () => {
  it('round-trips boundary plaintext lengths', () => {
    for (const length of [0, 1, 15, 16, 17, 31, 32, 33, 4096, 1 << 20]) {
      const plaintext = randomBytes(length);
      const value = encryptValue(key, aad, plaintext);
      assert.equal(value.length, length + VALUE_OVERHEAD, `length ${length}`);
      assert.deepEqual(decryptValue(key, aad, value, 'test'), plaintext, `length ${length}`);
    }
  });

  it('lays out version, nonce, ciphertext and tag', () => {
    const value = encryptValue(key, aad, Buffer.from('abc'));
    assert.equal(VALUE_OVERHEAD, 1 + 12 + 16);
    assert.equal(value[0], VALUE_FORMAT_VERSION);
    assert.equal(value.length, 1 + VALUE_NONCE_LENGTH + 3 + VALUE_TAG_LENGTH);
  });

  it('uses a fresh nonce per value', () => {
    const plaintext = Buffer.from('same plaintext');
    const first = encryptValue(key, aad, plaintext);
    const second = encryptValue(key, aad, plaintext);
    assert.notDeepEqual(first.subarray(1, 13), second.subarray(1, 13));
    assert.notDeepEqual(first, second);
  });

  it('rejects a key of the wrong length', () => {
    assert.throws(() => encryptValue(randomBytes(16), aad, Buffer.alloc(1)), (error: unknown) => isCasError(error, 'INTERNAL'));
  });
});

describe('decryptValue', () => {
  const plaintext = Buffer.from('a secret value');
  const value = encryptValue(key, aad, plaintext);

  it('rejects a flipped byte anywhere in the value', () => {
    for (let index = 0; index < value.length; index += 1) {
      const altered = Buffer.from(value);
      altered[index] = altered[index]! ^ 0x01;
      assertDecryptionFails(() => decryptValue(key, aad, altered, 'test'));
    }
  });

  it('rejects a wrong key', () => {
    assertDecryptionFails(() => decryptValue(randomBytes(32), aad, value, 'test'));
  });

  it('rejects another AAD (a value moved to another row)', () => {
    assertDecryptionFails(() => decryptValue(key, Buffer.from('cas/v1/sessions/00fe'), value, 'test'));
  });

  it('rejects truncated values at every length', () => {
    for (let length = 0; length < value.length; length += 1) {
      assertDecryptionFails(() => decryptValue(key, aad, value.subarray(0, length), 'test'));
    }
  });

  it('rejects an unknown version with its number', () => {
    const altered = Buffer.from(value);
    altered[0] = 2;
    assert.throws(() => decryptValue(key, aad, altered, 'meta row'), /unknown value format version 2/);
  });

  it('names the value in the message', () => {
    assert.throws(() => decryptValue(randomBytes(32), aad, value, 'sessions row in /x/cas.db'), /sessions row in \/x\/cas\.db/);
  });

  it('accepts the shortest value, an empty plaintext', () => {
    const empty = encryptValue(key, aad, Buffer.alloc(0));
    assert.equal(empty.length, VALUE_OVERHEAD);
    assert.equal(decryptValue(key, aad, empty, 'test').length, 0);
  });
});
