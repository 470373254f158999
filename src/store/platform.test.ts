import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes, sign as rawSign } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { KeyStore } from './key-store.js';
import { platformIdFromSpki } from './key-wrap.js';
import { loadOrCreateSimulationPlatform, openPlatform, platformIdFromPublicKeyPem, verifyPlatformSignature } from './platform.js';

const root = mkdtempSync(join(tmpdir(), 'cas-platform-test-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = (): string => join(root, `platform-${(counter += 1)}`);

describe('loadOrCreateSimulationPlatform', () => {
  it('creates the key file 0600 in a 0700 directory', async () => {
    const dir = freshDir();
    const platform = await loadOrCreateSimulationPlatform(dir);
    assert.equal(statSync(join(dir, 'platform.key')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(platform.mode, 'simulation');
    assert.match(readFileSync(join(dir, 'platform.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.deepEqual(readdirSync(dir), ['platform.key']);
  });

  it('reuses the existing key file', async () => {
    const dir = freshDir();
    const first = await loadOrCreateSimulationPlatform(dir);
    const before = readFileSync(join(dir, 'platform.key'));
    const second = await loadOrCreateSimulationPlatform(dir);
    assert.equal(second.id, first.id);
    assert.equal(second.publicKeyPem, first.publicKeyPem);
    assert.deepEqual(readFileSync(join(dir, 'platform.key')), before);
  });

  it('agrees on one key when started concurrently', async () => {
    const dir = freshDir();
    const platforms = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSimulationPlatform(dir)));
    assert.equal(new Set(platforms.map((platform) => platform.id)).size, 1);
    assert.deepEqual(readdirSync(dir), ['platform.key']);
  });

  it('derives the id from the SPKI DER public key', async () => {
    const platform = await loadOrCreateSimulationPlatform(freshDir());
    assert.equal(platform.id, platformIdFromSpki(platform.publicKeyDer));
    assert.equal(platform.id, platformIdFromPublicKeyPem(platform.publicKeyPem));
    assert.deepEqual(createPublicKey(platform.publicKeyPem).export({ type: 'spki', format: 'der' }), platform.publicKeyDer);
  });

  it('rejects a key file readable by others', async () => {
    const dir = freshDir();
    await loadOrCreateSimulationPlatform(dir);
    chmodSync(join(dir, 'platform.key'), 0o644);
    await assert.rejects(loadOrCreateSimulationPlatform(dir), (error: unknown) => {
      assert.ok(isCasError(error, 'PLATFORM_KEY_ERROR'));
      assert.match(error.message, /chmod 600/);
      return true;
    });
  });

  it('rejects a key file that is not a P-256 key', async () => {
    const dir = freshDir();
    await loadOrCreateSimulationPlatform(dir);
    writeFileSync(join(dir, 'platform.key'), 'garbage', { mode: 0o600 });
    await assert.rejects(loadOrCreateSimulationPlatform(dir), (error: unknown) => isCasError(error, 'PLATFORM_KEY_ERROR'));
  });
});

describe('openPlatform', () => {
  it('fails in hardware mode and says why', async () => {
    await assert.rejects(openPlatform({ mode: 'hardware', platformDir: freshDir() }), (error: unknown) => {
      assert.ok(isCasError(error, 'PLATFORM_KEY_ERROR'));
      assert.match(error.message, /Hardware mode is unavailable/);
      assert.match(error.message, /--mode simulation/);
      return true;
    });
  });

  it('opens the simulated key in simulation mode', async () => {
    const dir = freshDir();
    const platform = await openPlatform({ mode: 'simulation', platformDir: dir });
    assert.equal(platform.id, (await loadOrCreateSimulationPlatform(dir)).id);
  });
});

describe('Platform.unwrapDatabaseKey', () => {
  it('unwraps its own entry and rejects another platform\'s', async () => {
    const platform = await loadOrCreateSimulationPlatform(freshDir());
    const other = await loadOrCreateSimulationPlatform(freshDir());
    const databaseKey = randomBytes(32);
    const store = KeyStore.create(databaseKey, { publicKeyPem: platform.publicKeyPem, evidenceType: 'simulation', registeredBy: 'initial' });
    store.addPlatform(databaseKey, { publicKeyPem: other.publicKeyPem, evidenceType: 'simulation', registeredBy: 'owner' });
    assert.deepEqual(platform.unwrapDatabaseKey(store.entry(platform.id)!), databaseKey);
    assert.deepEqual(other.unwrapDatabaseKey(store.entry(other.id)!), databaseKey);
    assert.throws(() => platform.unwrapDatabaseKey(store.entry(other.id)!), (error: unknown) => isCasError(error, 'KEY_STORE_NO_ENTRY'));
    const forged = { ...store.entry(other.id)!, platformId: platform.id };
    assert.throws(() => platform.unwrapDatabaseKey(forged), (error: unknown) => isCasError(error, 'DECRYPTION_FAILED'));
  });
});

describe('Platform.sign', () => {
  it('produces signatures that verifyPlatformSignature accepts', async () => {
    const platform = await loadOrCreateSimulationPlatform(freshDir());
    const data = Buffer.from('statement');
    const signature = platform.sign(data);
    assert.equal(signature.length, 64);
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, data, signature), true);
  });

  it('rejects other data, other keys and altered signatures', async () => {
    const platform = await loadOrCreateSimulationPlatform(freshDir());
    const other = await loadOrCreateSimulationPlatform(freshDir());
    const data = Buffer.from('statement');
    const signature = platform.sign(data);
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, Buffer.from('statemenT'), signature), false);
    assert.equal(verifyPlatformSignature(other.publicKeyPem, data, signature), false);
    const altered = Buffer.from(signature);
    altered[10] = altered[10]! ^ 1;
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, data, altered), false);
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, data, signature.subarray(0, 63)), false);
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, data, Buffer.alloc(0)), false);
  });

  it('does not accept a raw ECDSA signature without the context prefix', async () => {
    const dir = freshDir();
    const platform = await loadOrCreateSimulationPlatform(dir);
    const privateKey = createPrivateKey(readFileSync(join(dir, 'platform.key')));
    const data = Buffer.from('statement');
    const raw = rawSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    assert.equal(verifyPlatformSignature(platform.publicKeyPem, data, raw), false);
  });

  it('verifyPlatformSignature rejects a malformed public key', () => {
    assert.throws(() => verifyPlatformSignature('nope', Buffer.alloc(1), Buffer.alloc(64)), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
  });
});
