import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { tempDir } from '../server/testing/cas-process.js';
import { startTestCas, type TestCas } from '../server/testing/in-process.js';
import { attestCas } from './attest.js';
import { connectPinned } from './connect.js';
import { PINNED_DIR, pinFileName } from './home.js';

async function rejection(action: () => Promise<unknown>): Promise<CasError> {
  try {
    await action();
  } catch (error) {
    assert.ok(error instanceof CasError, String(error));
    return error;
  }
  assert.fail('expected the call to fail');
}

describe('server certificate pinning', () => {
  let first: TestCas;
  let second: TestCas;

  before(async () => {
    first = await startTestCas();
    second = await startTestCas();
  });

  after(async () => {
    await first?.close();
    await second?.close();
  });

  it('connectPinned without a pin fails with SERVER_NOT_PINNED', async () => {
    const home = tempDir('home');
    const error = await rejection(() => connectPinned(first.url.origin, home));
    assert.equal(error.code, 'SERVER_NOT_PINNED');
    assert.ok(error.message.includes(first.url.origin));
    assert.match(error.message, /cas attest --cas/);
  });

  it('attestCas rejects a simulated CAS unless accepted', async () => {
    const home = tempDir('home');
    const error = await rejection(() => attestCas({ cas: first.url.origin, acceptSimulation: false, home }));
    assert.equal(error.code, 'SIMULATION_NOT_ALLOWED');
    assert.ok(!existsSync(join(home, PINNED_DIR, pinFileName(first.url))));
  });

  it('attestCas pins the presented certificate with mode 0600', async () => {
    const home = tempDir('home');
    const result = await attestCas({ cas: first.url.origin, acceptSimulation: true, home });
    assert.equal(result.mode, 'simulation');
    const pinPath = join(home, PINNED_DIR, pinFileName(first.url));
    assert.equal(statSync(pinPath).mode & 0o777, 0o600);
    const { client } = await connectPinned(first.url.origin, home);
    assert.equal((await client.status()).certificateSha256, result.certificateSha256);
  });

  it('a different server certificate fails with SERVER_CERT_MISMATCH', async () => {
    const home = tempDir('home');
    await attestCas({ cas: first.url.origin, acceptSimulation: true, home });
    await attestCas({ cas: second.url.origin, acceptSimulation: true, home });
    // Pin the second CAS's certificate under the first CAS's URL, as if the server at that URL was replaced.
    const secondPin = readFileSync(join(home, PINNED_DIR, pinFileName(second.url)), 'utf8');
    writeFileSync(join(home, PINNED_DIR, pinFileName(first.url)), secondPin, { mode: 0o600 });

    const { client } = await connectPinned(first.url.origin, home);
    const error = await rejection(() => client.status());
    assert.equal(error.code, 'SERVER_CERT_MISMATCH');
    assert.ok(error.message.includes(first.url.origin));
    assert.match(error.message, /cas attest --cas/);
  });
});
