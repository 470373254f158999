import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CasError } from '../errors/cas-error.js';
import { sharedDir } from '../testing/paths.js';
import { parseCollateralFile } from './intel/collateral.js';
import { verifyIntelQuote } from './intel/verify-quote.js';
import { verifySnpReport } from './snp/verify-report.js';
import { parseCertificate, parseCrl } from './x509.js';

// Random single-byte mutations must either be rejected with a CasError or leave the verified result
// unchanged: padding after a quote, reserved bytes after an SNP signature and PEM whitespace are not
// signed. Any other exception is a parser bug. The generator is seeded so failures reproduce.
const samples = join(sharedDir(), 'attestation-samples');

function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(bytes: Buffer, random: () => number): { copy: Buffer; offset: number } {
  const copy = Buffer.from(bytes);
  const offset = Math.floor(random() * copy.length);
  copy[offset] = (copy[offset]! + 1 + Math.floor(random() * 255)) & 0xff;
  return { copy, offset };
}

/** Runs `run`; a CasError passes, and a success must return `expected` (when given). */
function expectRejectedOrUnchanged(run: () => unknown, label: string, expected?: unknown): void {
  let result: unknown;
  try {
    result = run();
  } catch (error) {
    assert.ok(error instanceof CasError, `${label}: expected a CasError, got ${(error as Error).stack ?? String(error)}`);
    return;
  }
  if (expected !== undefined) assert.deepEqual(result, expected, `${label}: the mutation was accepted and changed the result`);
}

describe('mutation robustness', () => {
  it('mutated SGX and TDX quotes fail with CasError', () => {
    const random = generator(1);
    for (const [quotePath, collateralPath] of [
      ['dcap-qvl/sample/sgx_quote', 'dcap-qvl/sample/sgx_quote_collateral.json'],
      ['dcap-qvl/sample/tdx_quote', 'dcap-qvl/sample/tdx_quote_collateral.json'],
    ] as const) {
      const quote = readFileSync(join(samples, quotePath));
      const collateral = parseCollateralFile(readFileSync(join(samples, collateralPath), 'utf8'));
      const at = new Date(1751328000 * 1000);
      const expected = verifyIntelQuote(quote, collateral, { at });
      for (let i = 0; i < 400; i++) {
        const { copy, offset } = mutate(quote, random);
        expectRejectedOrUnchanged(() => verifyIntelQuote(copy, collateral, { at }), `${quotePath} byte ${offset}`, expected);
      }
    }
  });

  it('mutated certificates and CRLs fail with CasError', () => {
    const random = generator(2);
    const collateral = parseCollateralFile(readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote_collateral.json'), 'utf8'));
    const vcek = readFileSync(join(samples, 'go-sev-guest/verify/testdata/vcek.testcer'));
    const pem = readFileSync(join(samples, 'go-sev-guest/verify/testdata/milan.testcer'), 'utf8');
    const ask = Buffer.from(pem.split('-----END CERTIFICATE-----')[0]!.replace(/-----BEGIN CERTIFICATE-----|\s+/g, ''), 'base64');
    for (let i = 0; i < 600; i++) {
      for (const [label, der, parse] of [
        ['VCEK', vcek, parseCertificate],
        ['ASK', ask, parseCertificate],
        ['PCK CRL', collateral.pckCrl, parseCrl],
        ['root CA CRL', collateral.rootCaCrl, parseCrl],
      ] as const) {
        const { copy, offset } = mutate(der, random);
        // Parsing may succeed (a changed serial or name is still well-formed); it must never crash.
        expectRejectedOrUnchanged(() => parse(copy), `${label} byte ${offset}`);
      }
    }
  });

  it('mutated SEV-SNP reports and VCEKs fail with CasError', () => {
    const random = generator(3);
    const dir = join(samples, 'go-sev-guest/verify/testdata');
    const report = readFileSync(join(dir, 'attestation.bin'));
    const vcek = readFileSync(join(dir, 'vcek.testcer'));
    const [ask, ark] = readFileSync(join(dir, 'milan.testcer'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    const at = new Date('2025-01-01T00:00:00Z');
    const expected = verifySnpReport(report, { vcek, ask: ask!, trustedArks: [ark!], at });
    for (let i = 0; i < 300; i++) {
      const mutatedReport = mutate(report, random);
      expectRejectedOrUnchanged(() => verifySnpReport(mutatedReport.copy, { vcek, ask: ask!, trustedArks: [ark!], at }), `report byte ${mutatedReport.offset}`, expected);
      const mutatedVcek = mutate(vcek, random);
      expectRejectedOrUnchanged(() => verifySnpReport(report, { vcek: mutatedVcek.copy, ask: ask!, trustedArks: [ark!], at }), `VCEK byte ${mutatedVcek.offset}`, expected);
    }
  });
});
