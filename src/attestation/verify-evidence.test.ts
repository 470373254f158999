import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCasError } from '../errors/cas-error.js';
import { sharedDir } from '../testing/paths.js';
import { IntelCollateralCache } from './collateral/intel-cache.js';
import { KdsClient } from './collateral/kds-client.js';
import { PcsClient, collateralKeyForQuote } from './collateral/pcs-client.js';
import { startPcs, stop } from './collateral/test-support.js';
import { parseCollateralFile } from './intel/collateral.js';
import { verifyHardwareEvidence } from './verify-evidence.js';

const samples = join(sharedDir(), 'attestation-samples');
const read = (path: string): Buffer => readFileSync(join(samples, path));
const now = (): Date => new Date(1751328000 * 1000);

describe('verifyHardwareEvidence', () => {
  it('verifies SGX and TDX quotes with collateral from PCS', async () => {
    for (const [quotePath, collateralPath, teeType, tcbStatus] of [
      ['dcap-qvl/sample/sgx_quote', 'dcap-qvl/sample/sgx_quote_collateral.json', 'sgx', 'ConfigurationAndSWHardeningNeeded'],
      ['dcap-qvl/sample/tdx_quote', 'dcap-qvl/sample/tdx_quote_collateral.json', 'tdx', 'UpToDate'],
    ] as const) {
      const quote = read(quotePath);
      const pcs = await startPcs(parseCollateralFile(read(collateralPath).toString('utf8')), collateralKeyForQuote(quote));
      try {
        const intelCollateral = new IntelCollateralCache(new PcsClient({ baseUrl: pcs.baseUrl }), { now });
        const result = await verifyHardwareEvidence(quote, { intelCollateral, now });
        assert.equal(result.teeType, teeType);
        assert.equal(result.tcbStatus, tcbStatus);
      } finally {
        await stop(pcs.server);
      }
    }
  });

  it('verifies the quote as passed despite later edits', async () => {
    // The collateral source changes the caller's buffer while the quote waits for collateral. The result
    // must still be that of the bytes that were passed, with no check run on the changed ones.
    const quote = Buffer.from(read('dcap-qvl/sample/sgx_quote'));
    const original = Buffer.from(quote);
    const collateral = parseCollateralFile(read('dcap-qvl/sample/sgx_quote_collateral.json').toString('utf8'));
    const mrEnclaveOffset = 48 + 64;
    const intelCollateral = {
      get: async () => {
        quote.fill(0x77, mrEnclaveOffset, mrEnclaveOffset + 32);
        return collateral;
      },
    };
    const result = await verifyHardwareEvidence(quote, { intelCollateral, now });
    assert.equal(result.tcbStatus, 'ConfigurationAndSWHardeningNeeded');
    assert.equal(result.measurements.mrenclave, original.subarray(mrEnclaveOffset, mrEnclaveOffset + 32).toString('hex'));
    assert.notEqual(result.measurements.mrenclave, '77'.repeat(32));
  });

  it('rejects Intel quotes without a collateral source', async () => {
    await assert.rejects(verifyHardwareEvidence(read('dcap-qvl/sample/sgx_quote'), { now }), (error) => isCasError(error, 'COLLATERAL_UNAVAILABLE'));
  });

  describe('SEV-SNP through KDS', () => {
    const dir = 'go-sev-guest/verify/testdata';
    const chain = read(`${dir}/milan.testcer`).toString('utf8');
    const [, ark] = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    let server: Server;
    let baseUrl: string;

    before(async () => {
      server = createServer((request, response) => {
        const path = new URL(request.url!, 'http://127.0.0.1').pathname;
        response.writeHead(200);
        response.end(path.endsWith('/cert_chain') ? chain : read(`${dir}/vcek.testcer`));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => stop(server));

    it('verifies the sample report against the pinned ARK', async () => {
      const result = await verifyHardwareEvidence(read(`${dir}/attestation.bin`), { snp: { kds: new KdsClient({ baseUrl }), product: 'Milan', trustedArks: [ark!] }, now });
      assert.equal(result.teeType, 'snp');
    });

    it('rejects a report when the served ARK is not pinned', async () => {
      const intelRoot = read('derived/IntelSGXRootCA.pem').toString('utf8');
      await assert.rejects(
        verifyHardwareEvidence(read(`${dir}/attestation.bin`), { snp: { kds: new KdsClient({ baseUrl }), product: 'Milan', trustedArks: [intelRoot] }, now }),
        (error) => isCasError(error, 'CERT_CHAIN_INVALID'),
      );
    });
  });
});
