import 'reflect-metadata';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { isCasError, type ErrorCode } from '../../errors/cas-error.js';
import { sharedDir } from '../../testing/paths.js';
import { parseCertificate } from '../x509.js';
import { SNP_REPORT_SIZE, SNP_SIGNED_LENGTH } from './report.js';
import { verifySnpReport, type SnpVerifyOptions } from './verify-report.js';

const dir = join(sharedDir(), 'attestation-samples', 'go-sev-guest', 'verify', 'testdata');
const report = readFileSync(join(dir, 'attestation.bin'));
const vcek = readFileSync(join(dir, 'vcek.testcer'));
const [askPem, arkPem] = readFileSync(join(dir, 'milan.testcer'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
const at = new Date('2025-01-01T00:00:00Z');
const options: SnpVerifyOptions = { vcek, ask: askPem!, trustedArks: [arkPem!], at };

function expectCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isCasError(error), `expected a CasError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  });
}

function flipped(buffer: Buffer, offset: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[offset] = copy[offset]! ^ 0x01;
  return copy;
}

describe('verifySnpReport', () => {
  it('sample report verifies', () => {
    const result = verifySnpReport(report, options);
    assert.equal(result.teeType, 'snp');
    assert.equal(result.tcbStatus, 'NotEvaluated');
    assert.equal(result.measurements.measurement, 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01');
    assert.equal(result.measurements.reportVersion, 2);
    assert.equal(BigInt(result.measurements.policy!), 0xb0000n);
    assert.equal(result.measurements.debug, true, 'policy bit 19 (DEBUG) is set in the sample');
    assert.equal(result.measurements.reportedTcb, '4405000000000002');
    assert.deepEqual([...result.reportData.subarray(0, 6)], [1, 2, 3, 4, 5, 0]);
  });

  it('VCEK serial zero parses, where it is out of RFC 5280 range', () => {
    assert.equal(parseCertificate(vcek).serial, 0n);
  });

  it('VCEK as PEM verifies', () => {
    const pem = new X509Certificate(vcek).toString();
    assert.equal(verifySnpReport(report, { ...options, vcek: pem }).teeType, 'snp');
  });

  for (const [region, offset] of [
    ['version', 0x01],
    ['guest policy', 0x08],
    ['report data', 0x50],
    ['measurement', 0x90],
    ['host data', 0xc0],
    ['reported TCB', 0x180],
    ['chip id', 0x1a0],
    ['last signed byte', SNP_SIGNED_LENGTH - 1],
    ['signature r', 0x2a0 + 3],
    ['signature s', 0x2e8 + 3],
  ] as const) {
    it(`flipped byte in the ${region} is rejected`, () => {
      expectCode(() => verifySnpReport(flipped(report, offset), options), 'EVIDENCE_INVALID');
    });
  }

  it('truncated report is rejected', () => {
    for (const length of [0, 4, 0x2a0, SNP_REPORT_SIZE - 1]) {
      expectCode(() => verifySnpReport(report.subarray(0, length), options), 'EVIDENCE_INVALID', /truncated/);
    }
  });

  it('version 1 report is rejected', () => {
    const copy = Buffer.from(report);
    copy.writeUInt32LE(1, 0);
    expectCode(() => verifySnpReport(copy, options), 'EVIDENCE_INVALID', /version 1/);
  });

  it('VLEK-signed report is rejected', () => {
    const copy = Buffer.from(report);
    copy.writeUInt32LE(1 << 2, 0x48);
    expectCode(() => verifySnpReport(copy, options), 'EVIDENCE_INVALID', /VLEK/);
  });

  it('ARK that is not trusted is rejected', async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const other = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=ARK-Milan, O=Someone Else',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    expectCode(() => verifySnpReport(report, { ...options, trustedArks: [other.toString('pem')] }), 'CERT_CHAIN_INVALID', /not a trusted ARK/);
  });

  it('ASK in place of the VCEK is rejected', () => {
    expectCode(() => verifySnpReport(report, { ...options, vcek: askPem! }), 'CERT_CHAIN_INVALID', /"SEV-Milan", a CA certificate, not a VCEK/);
  });

  it('verification after the VCEK expires fails', () => {
    expectCode(() => verifySnpReport(report, { ...options, at: new Date('2030-01-01T00:00:00Z') }), 'CERT_CHAIN_INVALID', /SEV-VCEK/);
  });

  it('certificate with a negative serial parses', async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '7f01', name: 'CN=negative', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    // Generators refuse negative serials, so patch the encoded INTEGER 0x7f01 to 0xff01, which is -255.
    const der = Buffer.from(cert.rawData);
    const at = der.indexOf(Buffer.from([0x02, 0x02, 0x7f, 0x01]));
    assert.ok(at > 0);
    der[at + 2] = 0xff;
    assert.equal(parseCertificate(der).serial, -255n);
  });
});
