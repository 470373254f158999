import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { CasError } from '../../errors/cas-error.js';
import { openPlatform, type Platform } from '../../store/index.js';
import { tempDir } from '../testing/cas-process.js';
import { createSimulatedEvidence, PlatformKeyCache, verifySimulatedEvidence, type SimulatedEvidence } from './simulation.js';
import { verifyEvidence } from './verify.js';

function rejectionOf(action: () => unknown): CasError {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof CasError, String(error));
    return error;
  }
  assert.fail('expected EVIDENCE_INVALID');
}

describe('simulated evidence', () => {
  let platform: Platform;
  const nonce = randomBytes(32).toString('hex');
  const key = randomBytes(91);

  before(async () => {
    platform = await openPlatform({ mode: 'simulation', platformDir: join(tempDir('evidence'), 'platform') });
  });

  it('verifies with matching purpose, nonce and key', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const verified = verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key });
    assert.equal(verified.statement.nonce, nonce);
    assert.match(verified.platformKeyHash, /^[0-9a-f]{64}$/);
  });

  it('rejects another nonce', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const error = rejectionOf(() => verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce: randomBytes(32).toString('hex'), boundData: key }));
    assert.equal(error.code, 'EVIDENCE_INVALID');
    assert.match(error.message, /another nonce/);
  });

  it('rejects another bound key', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const error = rejectionOf(() => verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: randomBytes(91) }));
    assert.match(error.message, /bound to another key/);
  });

  it('rejects another purpose', () => {
    const evidence = createSimulatedEvidence(platform, 'cas-certificate', nonce, key);
    const error = rejectionOf(() => verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key }));
    assert.match(error.message, /purpose/);
  });

  it('rejects a changed statement', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const statement = Buffer.from(evidence.statement, 'base64');
    statement[statement.length - 3] = statement[statement.length - 3]! ^ 0x01;
    const tampered: SimulatedEvidence = { ...evidence, statement: statement.toString('base64') };
    const error = rejectionOf(() => verifySimulatedEvidence(tampered, { purpose: 'service-key', nonce, boundData: key }));
    assert.match(error.message, /signature does not verify/);
  });

  it('rejects a swapped platform key', async () => {
    const other = await openPlatform({ mode: 'simulation', platformDir: join(tempDir('evidence'), 'other') });
    const evidence = { ...createSimulatedEvidence(platform, 'service-key', nonce, key), platformPublicKey: other.publicKeyPem };
    const error = rejectionOf(() => verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key }));
    assert.match(error.message, /signature does not verify/);
  });

  it('rejects unknown fields', () => {
    const evidence = { ...createSimulatedEvidence(platform, 'service-key', nonce, key), extra: 1 };
    const error = rejectionOf(() => verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key }));
    assert.match(error.message, /malformed/);
  });

  it('dispatches by type and rejects unknown types', async () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const verified = await verifyEvidence(evidence, { nonce, publicKeyDer: key });
    assert.equal(verified.simulated, true);
    await assert.rejects(verifyEvidence({ type: 'sgx-epid' }, { nonce, publicKeyDer: key }), (error: unknown) => error instanceof CasError && /not supported/.test(error.message));
    await assert.rejects(verifyEvidence('text', { nonce, publicKeyDer: key }), (error: unknown) => error instanceof CasError && error.code === 'EVIDENCE_INVALID');
  });

  it('verifies a re-wrapped platform key PEM', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    const rewrapped = { ...evidence, platformPublicKey: evidence.platformPublicKey.replace(/\n/g, '\r\n') };
    const first = verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key });
    const second = verifySimulatedEvidence(rewrapped, { purpose: 'service-key', nonce, boundData: key });
    assert.equal(second.platformKeyHash, first.platformKeyHash);
  });

  it('rejects a non-PEM key after a cached one', () => {
    const evidence = createSimulatedEvidence(platform, 'service-key', nonce, key);
    verifySimulatedEvidence(evidence, { purpose: 'service-key', nonce, boundData: key });
    const broken = { ...evidence, platformPublicKey: evidence.platformPublicKey.replace('MFkw', 'MFkx') };
    const error = rejectionOf(() => verifySimulatedEvidence(broken, { purpose: 'service-key', nonce, boundData: key }));
    assert.equal(error.code, 'EVIDENCE_INVALID');
    assert.match(error.message, /not a PEM public key/);
  });
});

describe('platform key cache', () => {
  const pemOf = (): string => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

  it('returns the entry for identical text', () => {
    const cache = new PlatformKeyCache(4);
    const pem = pemOf();
    const first = cache.get(pem);
    assert.equal(cache.get(String(pem)), first);
    assert.equal(cache.size, 1);
  });

  it('misses on text with other bytes', () => {
    const cache = new PlatformKeyCache(4);
    const pem = pemOf();
    const first = cache.get(pem);
    const other = cache.get(pem.replace(/\n/g, '\r\n'));
    assert.notEqual(other, first);
    assert.equal(other.keyHash, first.keyHash);
    assert.equal(cache.size, 2);
  });

  it('returns another hash for another key', () => {
    const cache = new PlatformKeyCache(4);
    assert.notEqual(cache.get(pemOf()).keyHash, cache.get(pemOf()).keyHash);
  });

  it('drops the oldest entry when full', () => {
    const cache = new PlatformKeyCache(2);
    const [a, b, c] = [pemOf(), pemOf(), pemOf()];
    const first = cache.get(a);
    cache.get(b);
    cache.get(c);
    assert.equal(cache.size, 2);
    assert.notEqual(cache.get(a), first);
    assert.equal(cache.size, 2);
  });

  it('caches no key that fails to parse', () => {
    const cache = new PlatformKeyCache(4);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.throws(() => cache.get('not a key'), (error: unknown) => error instanceof CasError && error.code === 'EVIDENCE_INVALID');
    assert.throws(() => cache.get(rsa), (error: unknown) => error instanceof CasError && error.code === 'INVALID_ARGUMENT');
    assert.equal(cache.size, 0);
  });
});
