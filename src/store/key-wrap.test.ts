import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { platformIdFromSpki, unwrapKeyWithPrivateKey, wrapKeyForPlatform, WRAPPED_KEY_LENGTH } from './key-wrap.js';

function p256(): { privateKey: import('node:crypto').KeyObject; publicKeyPem: string; der: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    der: publicKey.export({ type: 'spki', format: 'der' }),
  };
}

describe('wrapKeyForPlatform', () => {
  const recipient = p256();
  const databaseKey = randomBytes(32);

  it('wraps with the public key only and unwraps with the private key', () => {
    const { platformId, wrapped } = wrapKeyForPlatform(recipient.publicKeyPem, databaseKey);
    assert.equal(wrapped.length, WRAPPED_KEY_LENGTH);
    assert.equal(WRAPPED_KEY_LENGTH, 126);
    assert.deepEqual(unwrapKeyWithPrivateKey(recipient.privateKey, platformId, wrapped), databaseKey);
  });

  it('derives the platform id from SHA-256 of the SPKI DER', () => {
    const { platformId } = wrapKeyForPlatform(recipient.publicKeyPem, databaseKey);
    const expected = createHash('sha256').update(recipient.der).digest().subarray(0, 16).toString('hex');
    assert.equal(platformId, expected);
    assert.equal(platformIdFromSpki(recipient.der), expected);
    assert.match(platformId, /^[0-9a-f]{32}$/);
  });

  it('uses a fresh ephemeral key per wrap', () => {
    const first = wrapKeyForPlatform(recipient.publicKeyPem, databaseKey).wrapped;
    const second = wrapKeyForPlatform(recipient.publicKeyPem, databaseKey).wrapped;
    assert.notDeepEqual(first.subarray(1, 66), second.subarray(1, 66));
  });

  it('rejects keys that are not P-256', () => {
    const others = [
      generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey,
      generateKeyPairSync('ed25519').publicKey,
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    ];
    for (const key of others) {
      const pem = key.export({ type: 'spki', format: 'pem' }).toString();
      assert.throws(() => wrapKeyForPlatform(pem, databaseKey), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
    }
    assert.throws(() => wrapKeyForPlatform('not a key', databaseKey), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
  });

  it('wraps only 32-byte keys', () => {
    assert.throws(() => wrapKeyForPlatform(recipient.publicKeyPem, randomBytes(31)), (error: unknown) => isCasError(error, 'INTERNAL'));
  });
});

describe('unwrapKeyWithPrivateKey', () => {
  const recipient = p256();
  const databaseKey = randomBytes(32);
  const { platformId, wrapped } = wrapKeyForPlatform(recipient.publicKeyPem, databaseKey);

  it('fails for another platform key', () => {
    const other = p256();
    assert.throws(() => unwrapKeyWithPrivateKey(other.privateKey, platformId, wrapped), (error: unknown) => isCasError(error, 'DECRYPTION_FAILED'));
  });

  it('fails when the platform id (the AAD) differs', () => {
    assert.throws(
      () => unwrapKeyWithPrivateKey(recipient.privateKey, '0'.repeat(32), wrapped),
      (error: unknown) => isCasError(error, 'DECRYPTION_FAILED'),
    );
  });

  it('fails for a flipped byte anywhere', () => {
    for (let index = 0; index < wrapped.length; index += 1) {
      const altered = Buffer.from(wrapped);
      altered[index] = altered[index]! ^ 0x80;
      assert.throws(
        () => unwrapKeyWithPrivateKey(recipient.privateKey, platformId, altered),
        (error: unknown) => isCasError(error, 'DECRYPTION_FAILED') || isCasError(error, 'KEY_STORE_INVALID'),
        `byte ${index}`,
      );
    }
  });

  it('rejects an ephemeral point off the curve', () => {
    const offCurve = Buffer.from(wrapped);
    offCurve[65] = offCurve[65]! ^ 0x01; // last byte of the y coordinate
    assert.throws(
      () => unwrapKeyWithPrivateKey(recipient.privateKey, platformId, offCurve),
      (error: unknown) => isCasError(error, 'KEY_STORE_INVALID') && /not a P-256 point/.test((error as Error).message),
    );
  });

  it('fails for wrong lengths with KEY_STORE_INVALID', () => {
    for (const length of [0, 1, WRAPPED_KEY_LENGTH - 1, WRAPPED_KEY_LENGTH + 1]) {
      const sized = Buffer.alloc(length, 1);
      if (length > 0) sized.set(wrapped.subarray(0, Math.min(length, wrapped.length)));
      assert.throws(
        () => unwrapKeyWithPrivateKey(recipient.privateKey, platformId, sized),
        (error: unknown) => isCasError(error, 'KEY_STORE_INVALID'),
        `length ${length}`,
      );
    }
  });
});
