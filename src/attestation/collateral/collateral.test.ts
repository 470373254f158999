import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCasError, type ErrorCode } from '../../errors/cas-error.js';
import { sharedDir } from '../../testing/paths.js';
import { parseCollateralFile, type IntelCollateral } from '../intel/collateral.js';
import { verifyIntelQuote } from '../intel/verify-quote.js';
import { verifySnpReport } from '../snp/verify-report.js';
import { FileCollateralStore } from './file-store.js';
import { IntelCollateralCache, collateralExpiry } from './intel-cache.js';
import { listenAgain, startPcs, stop } from './test-support.js';
import { KdsClient } from './kds-client.js';
import { PcsClient, collateralKeyForQuote, type CollateralKey } from './pcs-client.js';

const samples = join(sharedDir(), 'attestation-samples');
const sgxQuote = readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote'));
const tdxQuote = readFileSync(join(samples, 'dcap-qvl/sample/tdx_quote'));
const sgxCollateral = parseCollateralFile(readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote_collateral.json'), 'utf8'));
const verifyAt = new Date(1751328000 * 1000);
const API_KEY = 'test-dcap-api-key';

async function expectCode(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isCasError(error), `expected a CasError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  });
}

describe('collateralKeyForQuote', () => {
  it('reads FMSPC and PCK CA from the SGX sample', () => {
    assert.deepEqual(collateralKeyForQuote(sgxQuote), { teeType: 'sgx', fmspc: '00A067110000', ca: 'processor' });
  });

  it('reads FMSPC and PCK CA from the TDX sample', () => {
    assert.deepEqual(collateralKeyForQuote(tdxQuote), { teeType: 'tdx', fmspc: 'B0C06F000000', ca: 'platform' });
  });
});

describe('collateralExpiry', () => {
  it('names the item that expires first', () => {
    const expiry = collateralExpiry(sgxCollateral);
    assert.equal(expiry.item, 'QE identity QE');
    assert.equal(expiry.expiresAt.toISOString(), '2025-07-19T10:01:18.000Z');
  });
});

describe('PcsClient', () => {
  let pcs: Awaited<ReturnType<typeof startPcs>>;
  const key = collateralKeyForQuote(sgxQuote);

  before(async () => {
    pcs = await startPcs(sgxCollateral, key);
  });
  after(async () => stop(pcs.server));

  it('fetches collateral that verifies the sample quote', async () => {
    const collateral = await new PcsClient({ baseUrl: pcs.baseUrl, apiKey: API_KEY }).fetchCollateral(key);
    assert.equal(collateral.tcbInfo, sgxCollateral.tcbInfo);
    assert.equal(collateral.qeIdentity, sgxCollateral.qeIdentity);
    assert.deepEqual(collateral.pckCrl, sgxCollateral.pckCrl);
    assert.deepEqual(collateral.rootCaCrl, sgxCollateral.rootCaCrl);
    assert.equal(collateral.pckCrlIssuerChain, sgxCollateral.pckCrlIssuerChain);
    const result = verifyIntelQuote(sgxQuote, collateral, { at: verifyAt });
    assert.equal(result.tcbStatus, 'ConfigurationAndSWHardeningNeeded');
  });

  it('sends the API key on every request', async () => {
    const before = pcs.requests.length;
    await new PcsClient({ baseUrl: pcs.baseUrl + '/', apiKey: API_KEY }).fetchCollateral(key);
    const sent = pcs.requests.slice(before);
    assert.equal(sent.length, 4);
    for (const request of sent) assert.equal(request.headers['ocp-apim-subscription-key'], API_KEY);
    assert.ok(sent.some((request) => request.url === `/sgx/certification/v4/tcb?fmspc=${key.fmspc}`));
    assert.ok(sent.some((request) => request.url === '/sgx/certification/v4/pckcrl?ca=processor&encoding=der'));
  });

  it('omits the API key header when none is configured', async () => {
    const before = pcs.requests.length;
    await new PcsClient({ baseUrl: pcs.baseUrl }).fetchCollateral(key);
    for (const request of pcs.requests.slice(before)) assert.equal(request.headers['ocp-apim-subscription-key'], undefined);
  });

  it('keeps the API key from a redirect target', async () => {
    const received: Array<string | string[] | undefined> = [];
    const elsewhere = createServer((request, response) => {
      received.push(request.headers['ocp-apim-subscription-key']);
      response.end('{}');
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const redirecting = createServer((request, response) => {
      response.writeHead(302, { location: `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}${request.url}` });
      response.end();
    });
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const client = new PcsClient({ baseUrl: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}`, apiKey: API_KEY });
      await expectCode(client.fetchCollateral(key), 'COLLATERAL_UNAVAILABLE');
      assert.deepEqual(received, [], 'the redirect target received a request with the API key');
    } finally {
      await stop(redirecting);
      await stop(elsewhere);
    }
  });

  it('sends the API key only to the origin of the base URL', async () => {
    const crlServer = await startPcs(sgxCollateral, key);
    try {
      const before = pcs.requests.length;
      const rootCaCrlUrl = `${crlServer.baseUrl}/sgx/certification/v4/rootcacrl`;
      await new PcsClient({ baseUrl: pcs.baseUrl, apiKey: API_KEY, rootCaCrlUrl }).fetchCollateral(key);
      assert.equal(crlServer.requests.length, 1);
      assert.equal(crlServer.requests[0]!.headers['ocp-apim-subscription-key'], undefined);
      const sent = pcs.requests.slice(before);
      assert.equal(sent.length, 3);
      for (const request of sent) assert.equal(request.headers['ocp-apim-subscription-key'], API_KEY);
    } finally {
      await stop(crlServer.server);
    }
  });

  it('reports an unknown FMSPC as unavailable', async () => {
    await expectCode(new PcsClient({ baseUrl: pcs.baseUrl }).fetchCollateral({ ...key, fmspc: '000000000000' }), 'COLLATERAL_UNAVAILABLE', /HTTP 404/);
  });
});

describe('IntelCollateralCache', () => {
  const key: CollateralKey = collateralKeyForQuote(sgxQuote);

  function countingClient(baseUrl: string): { source: PcsClient; fetches: () => number } {
    const client = new PcsClient({ baseUrl, timeoutMs: 2000 });
    let count = 0;
    const source = Object.assign(Object.create(client) as PcsClient, {
      fetchCollateral: async (k: CollateralKey) => {
        count++;
        return client.fetchCollateral(k);
      },
    });
    return { source, fetches: () => count };
  }

  it('serves from cache, survives an outage, then expires', async () => {
    const pcs = await startPcs(sgxCollateral, key);
    const port = Number(new URL(pcs.baseUrl).port);
    const hour = 60 * 60 * 1000;
    let now = verifyAt;
    const { source, fetches } = countingClient(pcs.baseUrl);
    const cache = new IntelCollateralCache(source, { now: () => now, refreshAfterMs: hour, retryAfterMs: 60_000 });

    const first = await cache.get(key);
    assert.equal(fetches(), 1);
    assert.equal(await cache.get(key), first, 'a second request within the refresh interval is served from cache');
    assert.equal(fetches(), 1);

    // The network goes down: the refresh fails, and the cached copy is served until it expires.
    await stop(pcs.server);
    now = new Date(verifyAt.getTime() + 2 * hour);
    const stale = await cache.get(key);
    assert.equal(fetches(), 2);
    assert.equal(verifyIntelQuote(sgxQuote, stale, { at: now }).tcbStatus, 'ConfigurationAndSWHardeningNeeded');
    assert.equal(await cache.get(key), stale, 'no new attempt within the retry interval');
    assert.equal(fetches(), 2);

    // The network comes back on the same port: the next attempt fetches fresh collateral.
    const back = await listenAgain(sgxCollateral, key, port);
    now = new Date(now.getTime() + 2 * 60_000);
    assert.equal((await cache.get(key)).tcbInfo, sgxCollateral.tcbInfo);
    assert.equal(fetches(), 3);
    await stop(back);

    // Down again, past the earliest nextUpdate: the cache no longer serves, and the error names what expired.
    now = new Date('2025-07-19T10:01:19Z');
    await expectCode(cache.get(key), 'COLLATERAL_EXPIRED', /QE identity QE expired at 2025-07-19T10:01:18.000Z/);
    assert.equal(fetches(), 4);
  });

  it('serves a stored copy after a restart while the network is down', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'cas-collateral-'));
    try {
      const pcs = await startPcs(sgxCollateral, key);
      await new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl }), { now: () => verifyAt, store: new FileCollateralStore(directory) }).get(key);
      await stop(pcs.server);
      assert.deepEqual(readdirSync(directory), ['sgx-00A067110000-processor.json']);

      // A new process: nothing in memory, PCS unreachable, the stored copy still valid.
      let now = verifyAt;
      const restarted = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl, timeoutMs: 2000 }), { now: () => now, store: new FileCollateralStore(directory) });
      const stored = await restarted.get(key);
      assert.equal(stored.tcbInfo, sgxCollateral.tcbInfo);
      assert.equal(verifyIntelQuote(sgxQuote, stored, { at: now }).tcbStatus, 'ConfigurationAndSWHardeningNeeded');

      now = new Date('2025-07-20T00:00:00Z');
      await expectCode(restarted.get(key), 'COLLATERAL_EXPIRED', /QE identity QE expired/);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('ignores a damaged stored copy', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'cas-collateral-'));
    try {
      writeFileSync(join(directory, 'sgx-00A067110000-processor.json'), '{"truncated":');
      const pcs = await startPcs(sgxCollateral, key);
      await stop(pcs.server);
      const cache = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl, timeoutMs: 2000 }), { now: () => verifyAt, store: new FileCollateralStore(directory) });
      await expectCode(cache.get(key), 'COLLATERAL_UNAVAILABLE');
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('fails as unavailable without a cached copy', async () => {
    const pcs = await startPcs(sgxCollateral, key);
    await stop(pcs.server);
    const cache = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl, timeoutMs: 2000 }), { now: () => verifyAt });
    await expectCode(cache.get(key), 'COLLATERAL_UNAVAILABLE', /failed/);
  });

  it('rejects collateral that the source serves already expired', async () => {
    const pcs = await startPcs(sgxCollateral, key);
    try {
      const cache = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl }), { now: () => new Date('2025-08-01T00:00:00Z') });
      await expectCode(cache.get(key), 'COLLATERAL_EXPIRED', /served expired collateral/);
    } finally {
      await stop(pcs.server);
    }
  });

  it('keys entries by FMSPC', async () => {
    const pcs = await startPcs(sgxCollateral, key);
    try {
      const cache = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl }), { now: () => verifyAt });
      await cache.get(key);
      await expectCode(cache.get({ ...key, fmspc: '00906ED50000' }), 'COLLATERAL_UNAVAILABLE', /HTTP 404/);
    } finally {
      await stop(pcs.server);
    }
  });
});

describe('KdsClient', () => {
  const dir = join(samples, 'go-sev-guest/verify/testdata');
  const report = readFileSync(join(dir, 'attestation.bin'));
  const vcek = readFileSync(join(dir, 'vcek.testcer'));
  const chain = readFileSync(join(dir, 'milan.testcer'), 'utf8');
  let server: Server;
  let baseUrl: string;
  const urls: string[] = [];

  before(async () => {
    server = createServer((request, response) => {
      urls.push(request.url!);
      const url = new URL(request.url!, 'http://127.0.0.1');
      if (url.pathname === '/vcek/v1/Milan/cert_chain') {
        response.writeHead(200, { 'Content-Type': 'application/x-pem-file' });
        response.end(chain);
      } else if (url.pathname.startsWith('/vcek/v1/Milan/')) {
        response.writeHead(200, { 'Content-Type': 'application/pkix-cert' });
        response.end(vcek);
      } else {
        response.writeHead(404);
        response.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => stop(server));

  it('fetches the VCEK and chain that verify the sample report', async () => {
    const kds = new KdsClient({ baseUrl });
    const fetched = await kds.vcekForReport(report, 'Milan');
    const pem = await kds.certChain('Milan');
    const [ask, ark] = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    const chipId = report.subarray(0x1a0, 0x1e0).toString('hex');
    assert.equal(urls[0], `/vcek/v1/Milan/${chipId}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68`);
    const result = verifySnpReport(report, { vcek: fetched, ask: ask!, trustedArks: [ark!], at: new Date('2025-01-01T00:00:00Z') });
    assert.equal(result.teeType, 'snp');
  });

  it('caches VCEKs by chip and TCB', async () => {
    const kds = new KdsClient({ baseUrl });
    const before = urls.length;
    await kds.vcekForReport(report, 'Milan');
    await kds.vcekForReport(report, 'Milan');
    assert.equal(urls.length - before, 1);
  });

  it('reports an unknown product as unavailable', async () => {
    await expectCode(new KdsClient({ baseUrl }).certChain('Genoa'), 'COLLATERAL_UNAVAILABLE', /HTTP 404/);
  });
});
