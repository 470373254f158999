import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadOrCreateIdentity } from '../client/home.js';
import { sendRequest, type TransportOptions } from '../client/transport.js';
import { FILE_NAMES } from '../config/defaults.js';
import { isCasError } from '../errors/cas-error.js';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../server/testing/cas-process.js';

/** The owner-only snapshot download routes of a real `cas serve`: listing, ranges and rejected input. */

describe('snapshot download routes', () => {
  const root = tempDir('snapshot-download');
  const dataDir = join(root, 'data');
  const snapshotDir = join(root, 'snapshots');
  let cas: CasProcess;
  let owner: TransportOptions;
  let stranger: TransportOptions;
  let snapshot = '';

  before(async () => {
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'platform'), '--snapshot-dir', snapshotDir, '--snapshot-interval', '1', '--listen', '127.0.0.1:0', '--lease', 'none'] });
    const token = readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
    const provisioned = await runCas(['provision', '--cas', cas.url, '--token', token], { CAS_HOME: join(root, 'owner') });
    assert.equal(provisioned.code, 0, provisioned.stderr);
    const transport = async (home: string): Promise<TransportOptions> => {
      const identity = await loadOrCreateIdentity(join(root, home));
      return { casUrl: new URL(cas.url), clientKeyPem: identity.privateKeyPem, clientCertificatePem: identity.certificatePem, trust: { kind: 'unverified' } };
    };
    owner = await transport('owner');
    stranger = await transport('stranger');

    // Provisioning changed the database, so the scheduler takes a snapshot within about a second.
    for (let attempt = 0; attempt < 100 && snapshot === ''; attempt += 1) {
      const listing = (await sendRequest(owner, 'GET', '/v1/snapshots')).body as { snapshots: Array<{ name: string; status: string }> };
      snapshot = listing.snapshots.find((entry) => entry.status === 'valid')?.name ?? '';
      if (snapshot === '') await sleep(200);
    }
    assert.notEqual(snapshot, '', 'no snapshot was taken');
  });

  after(async () => {
    await cas?.stop();
  });

  it('returns a file in ranges', async () => {
    const expected = readFileSync(join(snapshotDir, snapshot, 'manifest.json'));
    const parts: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const chunk = (await sendRequest(owner, 'GET', `/v1/snapshots/${snapshot}/files/manifest.json?offset=${offset}&length=100`)).body as { size: number; offset: number; contentBase64: string };
      assert.equal(chunk.size, expected.length);
      assert.equal(chunk.offset, offset);
      const data = Buffer.from(chunk.contentBase64, 'base64');
      assert.ok(data.length <= 100);
      parts.push(data);
      offset += data.length;
      if (offset >= chunk.size) break;
    }
    assert.ok(parts.length > 1, 'the manifest spans several ranges');
    assert.deepEqual(Buffer.concat(parts), expected);
  });

  it('rejects other clients', async () => {
    await assert.rejects(sendRequest(stranger, 'GET', '/v1/snapshots'), (error: unknown) => isCasError(error, 'PERMISSION_DENIED'));
    await assert.rejects(sendRequest(stranger, 'GET', `/v1/snapshots/${snapshot}/files/cas.db`), (error: unknown) => isCasError(error, 'PERMISSION_DENIED'));
  });

  it('rejects names outside the snapshot directory', async () => {
    for (const path of [
      `/v1/snapshots/${encodeURIComponent('../data')}/files/cas.db`,
      `/v1/snapshots/${encodeURIComponent(`${snapshot}/..`)}/files/cas.db`,
      `/v1/snapshots/${snapshot}/files/${encodeURIComponent('../../data/cas.db')}`,
      `/v1/snapshots/${snapshot}/files/cas.db-wal`,
    ]) {
      await assert.rejects(sendRequest(owner, 'GET', path), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'), path);
    }
  });

  it('rejects invalid ranges', async () => {
    const size = readFileSync(join(snapshotDir, snapshot, 'cas.key-store')).length;
    await assert.rejects(sendRequest(owner, 'GET', `/v1/snapshots/${snapshot}/files/cas.key-store?offset=${size + 1}`), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
    await assert.rejects(sendRequest(owner, 'GET', `/v1/snapshots/${snapshot}/files/cas.key-store?length=0`), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
    await assert.rejects(sendRequest(owner, 'GET', `/v1/snapshots/${snapshot}/files/cas.key-store?length=${4 * 1024 * 1024 + 1}`), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
    await assert.rejects(sendRequest(owner, 'GET', `/v1/snapshots/${snapshot}/files/cas.key-store?extra=1`), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
  });

  it('returns NOT_FOUND for a missing snapshot', async () => {
    await assert.rejects(sendRequest(owner, 'GET', '/v1/snapshots/snapshot-20000101T000000.000Z/files/cas.db'), (error: unknown) => isCasError(error, 'NOT_FOUND'));
  });
});
