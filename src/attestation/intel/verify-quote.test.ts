import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCasError, type ErrorCode } from '../../errors/cas-error.js';
import { sharedDir } from '../../testing/paths.js';
import { INTEL_SGX_ROOT_CA_PEM, INTEL_SGX_ROOT_CA_SHA256 } from '../intel-root-ca.js';
import { certificatesFromPem } from '../x509.js';
import { parseCollateralFile, type IntelCollateral } from './collateral.js';
import { parseQuote } from './quote.js';
import {
  FIXTURE_TIME,
  PLATFORM_COMPONENTS,
  QE_MRSIGNER,
  UP_TO_DATE_LEVELS,
  buildCollateral,
  buildSgxQuote,
  createCa,
  createCrl,
  createPki,
  qeIdentityText,
  signP1363,
  tcbInfoText,
  type Pki,
} from './test-support.js';
import { verifyIntelQuote } from './verify-quote.js';

const samples = join(sharedDir(), 'attestation-samples');

interface ManifestCase {
  id: string;
  quote: string;
  encoding?: string;
  collateral: string;
  verifyAt: number;
  expect: { ok: boolean; tcbStatus?: string; advisoryIds?: string[]; reason?: string };
}

const manifest = JSON.parse(readFileSync(join(samples, 'manifest.json'), 'utf8')) as { cases: ManifestCase[]; intelRootCaPem: string };
const samplePem = readFileSync(join(samples, manifest.intelRootCaPem), 'utf8');

function loadQuote(entry: ManifestCase): Buffer {
  const bytes = readFileSync(join(samples, entry.quote));
  return entry.encoding?.startsWith('hex') ? Buffer.from(bytes.toString('utf8').trim().replace(/^0x/, ''), 'hex') : bytes;
}

function caseById(id: string): { quote: Buffer; collateral: IntelCollateral; at: Date } {
  const entry = manifest.cases.find((candidate) => candidate.id === id)!;
  return { quote: loadQuote(entry), collateral: parseCollateralFile(readFileSync(join(samples, entry.collateral), 'utf8')), at: new Date(entry.verifyAt * 1000) };
}

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

describe('embedded Intel SGX Root CA', () => {
  it('matches the published fingerprint', () => {
    const [root] = certificatesFromPem(INTEL_SGX_ROOT_CA_PEM, 'root');
    assert.equal(createHash('sha256').update(root!.der).digest('hex'), INTEL_SGX_ROOT_CA_SHA256);
  });

  it('equals the sample root certificate', () => {
    assert.equal(INTEL_SGX_ROOT_CA_PEM.trim(), samplePem.trim());
  });
});

describe('verifyIntelQuote › manifest cases', () => {
  for (const entry of manifest.cases) {
    it(`${entry.id} gives the expected result`, () => {
      const { quote, collateral, at } = caseById(entry.id);
      if (entry.expect.ok) {
        const result = verifyIntelQuote(quote, collateral, { at, rootCa: samplePem });
        assert.equal(result.tcbStatus, entry.expect.tcbStatus);
        assert.deepEqual(result.advisoryIds, entry.expect.advisoryIds);
      } else {
        expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: samplePem }), 'TCB_NOT_MATCHED', /no TCB level/);
      }
    });
  }

  it('sgx-v3 sample yields its measurements', () => {
    const { quote, collateral, at } = caseById('sgx-v3-processor-ca');
    const result = verifyIntelQuote(quote, collateral, { at });
    assert.equal(result.teeType, 'sgx');
    assert.equal(result.measurements.mrenclave, '33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb');
    assert.equal(result.measurements.mrsigner, '815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6');
    assert.equal(result.measurements.isvprodid, 0);
    assert.equal(result.measurements.debug, false);
    assert.equal(result.reportData.length, 64);
    assert.equal(result.reportData.subarray(0, 13).toString('latin1'), 'Hello, world!');
  });

  it('tdx-v4 sample yields its measurements despite trailing padding', () => {
    const { quote, collateral, at } = caseById('tdx-v4-platform-ca');
    assert.equal(quote.length, 5006);
    assert.equal(parseQuote(quote).length, 4936);
    const result = verifyIntelQuote(quote, collateral, { at });
    assert.equal(result.teeType, 'tdx');
    assert.equal(result.measurements.mrtd, '91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7');
    assert.equal(result.measurements.tdAttributes, '0000001000000000');
    assert.equal(result.measurements.xfam, 'e702060000000000');
    assert.equal(result.measurements.rtmr3, '0'.repeat(96));
    assert.equal(result.measurements.debug, false);
  });
});

describe('verifyIntelQuote › tampered quotes', () => {
  const sgx = caseById('sgx-v3-processor-ca');
  const tdx = caseById('tdx-v4-platform-ca');
  const sgxQuote = parseQuote(sgx.quote);
  const sgxSig = sgxQuote.signedBytes.length + 4;
  const qeReportAt = sgxSig + 128;
  const authAt = qeReportAt + 384 + 64 + 2;
  const sgxCases: Array<[string, number, ErrorCode]> = [
    ['header user data', 40, 'EVIDENCE_INVALID'],
    ['header QE SVN', 8, 'EVIDENCE_INVALID'],
    ['report body MRENCLAVE', 48 + 64, 'EVIDENCE_INVALID'],
    ['report body report data', 48 + 320, 'EVIDENCE_INVALID'],
    ['quote signature r', sgxSig, 'EVIDENCE_INVALID'],
    ['quote signature s', sgxSig + 40, 'EVIDENCE_INVALID'],
    ['attestation key', sgxSig + 64 + 10, 'EVIDENCE_INVALID'],
    ['QE report', qeReportAt + 64, 'EVIDENCE_INVALID'],
    ['QE report data', qeReportAt + 320, 'EVIDENCE_INVALID'],
    ['QE report signature', qeReportAt + 384 + 5, 'EVIDENCE_INVALID'],
    ['QE authentication data', authAt + 3, 'EVIDENCE_INVALID'],
  ];
  for (const [region, offset, code] of sgxCases) {
    it(`SGX quote with a flipped byte in the ${region} is rejected`, () => {
      expectCode(() => verifyIntelQuote(flipped(sgx.quote, offset), sgx.collateral, { at: sgx.at }), code);
    });
  }

  it('SGX quote with a flipped byte in the PCK certificate signature is rejected', () => {
    const pem = sgxQuote.pckChainPem;
    const leafEnd = pem.indexOf('-----END CERTIFICATE-----');
    const offset = sgx.quote.indexOf(Buffer.from(pem.slice(leafEnd - 20, leafEnd)));
    const copy = Buffer.from(sgx.quote);
    copy[offset + 2] = copy[offset + 2] === 0x41 ? 0x42 : 0x41;
    expectCode(() => verifyIntelQuote(copy, sgx.collateral, { at: sgx.at }), 'CERT_CHAIN_INVALID');
  });

  const tdxQuote = parseQuote(tdx.quote);
  const tdxSig = tdxQuote.signedBytes.length + 4;
  const tdxCases: Array<[string, number]> = [
    ['header', 30],
    ['TD report MRTD', 48 + 136],
    ['TD report RTMR0', 48 + 328],
    ['TD report TD attributes', 48 + 120 + 3],
    ['TD report report data', 48 + 520],
    ['quote signature', tdxSig + 1],
    ['attestation key', tdxSig + 64 + 1],
    ['QE report', tdxSig + 128 + 6 + 100],
    ['QE report signature', tdxSig + 128 + 6 + 384 + 1],
  ];
  for (const [region, offset] of tdxCases) {
    it(`TDX quote with a flipped byte in the ${region} is rejected`, () => {
      expectCode(() => verifyIntelQuote(flipped(tdx.quote, offset), tdx.collateral, { at: tdx.at }), 'EVIDENCE_INVALID');
    });
  }

  it('TDX quote with another MRSIGNERSEAM fails the module check', () => {
    expectCode(() => verifyIntelQuote(flipped(tdx.quote, 48 + 64), tdx.collateral, { at: tdx.at }), 'EVIDENCE_INVALID', /MRSIGNERSEAM/);
  });

  it('TDX quote from an unknown module version matches no module identity', () => {
    const copy = Buffer.from(tdx.quote);
    copy[48 + 1] = 0x07;
    expectCode(() => verifyIntelQuote(copy, tdx.collateral, { at: tdx.at }), 'TCB_NOT_MATCHED', /TDX_07/);
  });

  it('every truncation of the SGX quote is rejected', () => {
    for (let length = 0; length < sgxQuote.length; length++) {
      expectCode(() => verifyIntelQuote(sgx.quote.subarray(0, length), sgx.collateral, { at: sgx.at }), 'EVIDENCE_INVALID');
    }
  });

  it('truncations of the TDX quote are rejected', () => {
    for (const length of [0, 1, 47, 48, 631, 632, 635, 636, 700, 1200, 4935]) {
      expectCode(() => verifyIntelQuote(tdx.quote.subarray(0, length), tdx.collateral, { at: tdx.at }), 'EVIDENCE_INVALID', /truncated/);
    }
  });

  it('unsupported quote version is rejected', () => {
    const copy = Buffer.from(sgx.quote);
    copy.writeUInt16LE(2, 0);
    expectCode(() => verifyIntelQuote(copy, sgx.collateral, { at: sgx.at }), 'EVIDENCE_INVALID', /version 2/);
  });
});

describe('verifyIntelQuote › collateral checks on the samples', () => {
  const sgx = caseById('sgx-v3-processor-ca');
  const verify = (collateral: IntelCollateral, at = sgx.at, rootCa?: string): unknown => verifyIntelQuote(sgx.quote, collateral, { at, ...(rootCa ? { rootCa } : {}) });

  it('a wrong root CA with another name is rejected', async () => {
    const other = await createCa('Some Other Root CA');
    expectCode(() => verify(sgx.collateral, sgx.at, other.cert.toString('pem')), 'CERT_CHAIN_INVALID', /not the trusted root/);
  });

  it('a wrong root CA with the Intel name is rejected', async () => {
    const impostor = await createCa('Intel SGX Root CA');
    expectCode(() => verify(sgx.collateral, sgx.at, impostor.cert.toString('pem')), 'CERT_CHAIN_INVALID', /not the trusted root/);
  });

  it('re-serialised TCB Info fails its signature', () => {
    // A parser that stores fields in its own order writes them back in that order.
    const parsed = JSON.parse(sgx.collateral.tcbInfo) as Record<string, unknown>;
    const reserialised = JSON.stringify(Object.fromEntries(Object.entries(parsed).sort(([a], [b]) => a.localeCompare(b))));
    assert.notEqual(reserialised, sgx.collateral.tcbInfo);
    assert.deepEqual(JSON.parse(reserialised), parsed);
    expectCode(() => verify({ ...sgx.collateral, tcbInfo: reserialised }), 'COLLATERAL_INVALID', /TCB Info signature/);
    const pretty = JSON.stringify(JSON.parse(sgx.collateral.tcbInfo), null, 2);
    expectCode(() => verify({ ...sgx.collateral, tcbInfo: pretty }), 'COLLATERAL_INVALID', /TCB Info signature/);
  });

  it('edited TCB Info fails its signature', () => {
    const edited = sgx.collateral.tcbInfo.replace('"tcbStatus":"ConfigurationAndSWHardeningNeeded"', '"tcbStatus":"UpToDate"');
    assert.notEqual(edited, sgx.collateral.tcbInfo);
    expectCode(() => verify({ ...sgx.collateral, tcbInfo: edited }), 'COLLATERAL_INVALID', /TCB Info signature/);
  });

  it('flipped TCB Info signature is rejected', () => {
    expectCode(() => verify({ ...sgx.collateral, tcbInfoSignature: flipped(sgx.collateral.tcbInfoSignature, 10) }), 'COLLATERAL_INVALID', /TCB Info signature/);
  });

  it('edited QE identity fails its signature', () => {
    const edited = sgx.collateral.qeIdentity.replace('"isvprodid":1', '"isvprodid":2');
    assert.notEqual(edited, sgx.collateral.qeIdentity);
    expectCode(() => verify({ ...sgx.collateral, qeIdentity: edited }), 'COLLATERAL_INVALID', /QE identity signature/);
  });

  it('flipped QE identity signature is rejected', () => {
    expectCode(() => verify({ ...sgx.collateral, qeIdentitySignature: flipped(sgx.collateral.qeIdentitySignature, 40) }), 'COLLATERAL_INVALID', /QE identity signature/);
  });

  it('PCK CRL with a bad signature is rejected', () => {
    const crl = sgx.collateral.pckCrl;
    expectCode(() => verify({ ...sgx.collateral, pckCrl: flipped(crl, crl.length - 5) }), 'COLLATERAL_INVALID', /PCK CRL: the signature does not verify/);
  });

  it('PCK CRL from the wrong issuer is rejected', () => {
    expectCode(() => verify({ ...sgx.collateral, pckCrl: sgx.collateral.rootCaCrl }), 'COLLATERAL_INVALID', /PCK CRL names "Intel SGX Root CA"/);
  });

  it('root CA CRL with a bad signature is rejected', () => {
    const crl = sgx.collateral.rootCaCrl;
    expectCode(() => verify({ ...sgx.collateral, rootCaCrl: flipped(crl, crl.length - 5) }), 'COLLATERAL_INVALID', /Root CA CRL: the signature does not verify/);
  });

  it('root CA CRL from the wrong issuer is rejected', () => {
    expectCode(() => verify({ ...sgx.collateral, rootCaCrl: sgx.collateral.pckCrl }), 'COLLATERAL_INVALID', /Root CA CRL is issued by "Intel SGX PCK Processor CA"/);
  });

  it('collateral of another TEE type is rejected', () => {
    const tdx = caseById('tdx-v4-platform-ca');
    expectCode(() => verify(tdx.collateral), 'COLLATERAL_INVALID');
  });

  it('verification past QE identity nextUpdate fails as expired', () => {
    expectCode(() => verify(sgx.collateral, new Date('2025-07-19T10:05:00Z')), 'COLLATERAL_EXPIRED', /QE identity QE expired at 2025-07-19T10:01:18Z/);
  });

  it('verification a year later fails as expired', () => {
    expectCode(() => verify(sgx.collateral, new Date('2026-07-01T00:00:00Z')), 'COLLATERAL_EXPIRED');
  });

  it('verification before the collateral was issued fails', () => {
    expectCode(() => verify(sgx.collateral, new Date('2025-06-19T09:00:00Z')), 'COLLATERAL_INVALID', /not valid before|issued at/);
  });

  it('verification after the certificates expire fails', () => {
    expectCode(() => verify(sgx.collateral, new Date('2050-01-01T00:00:00Z')), 'CERT_CHAIN_INVALID', /valid from/);
  });
});

describe('verifyIntelQuote › own PKI', () => {
  let pki: Pki;
  let rootPem: string;
  let quote: Buffer;
  let baseCollateral: IntelCollateral;
  const at = FIXTURE_TIME;

  before(async () => {
    pki = await createPki();
    rootPem = pki.root.cert.toString('pem');
    quote = await buildSgxQuote(pki);
    baseCollateral = await buildCollateral(pki);
  });

  it('valid quote verifies as UpToDate', async () => {
    const result = verifyIntelQuote(quote, await buildCollateral(pki), { at, rootCa: rootPem });
    assert.equal(result.tcbStatus, 'UpToDate');
    assert.deepEqual(result.advisoryIds, []);
    assert.equal(result.measurements.mrenclave, 'aa'.repeat(32));
    assert.equal(result.measurements.isvprodid, 7);
    assert.equal(result.measurements.isvsvn, 3);
  });

  for (const version of [4, 5] as const) {
    it(`SGX quote v${version} verifies`, async () => {
      const other = await buildSgxQuote(pki, { version });
      assert.equal(parseQuote(other).header.version, version);
      const result = verifyIntelQuote(other, baseCollateral, { at, rootCa: rootPem });
      assert.equal(result.teeType, 'sgx');
      assert.equal(result.measurements.mrenclave, 'aa'.repeat(32));
    });

    it(`SGX quote v${version} with a flipped body byte is rejected`, async () => {
      const other = await buildSgxQuote(pki, { version });
      const bodyOffset = version === 5 ? 48 + 6 : 48;
      expectCode(() => verifyIntelQuote(flipped(other, bodyOffset + 64), baseCollateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /quote signature/);
    });
  }

  it('NUL-padded PCK chain verifies', () => {
    // Quote v3 layout: the signature data size is at 432 and the PCK certification data size at 1048.
    const padding = 37;
    const padded = Buffer.concat([quote, Buffer.alloc(padding)]);
    padded.writeUInt32LE(quote.readUInt32LE(432) + padding, 432);
    padded.writeUInt32LE(quote.readUInt32LE(1048) + padding, 1048);
    assert.equal(parseQuote(padded).pckChainPem, parseQuote(quote).pckChainPem);
    assert.equal(verifyIntelQuote(padded, baseCollateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
  });

  it('quote v5 with a wrong body size is rejected', async () => {
    const other = await buildSgxQuote(pki, { version: 5 });
    other.writeUInt32LE(383, 50);
    expectCode(() => verifyIntelQuote(other, baseCollateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /size 383/);
  });

  it('collateral changed in place after use is verified again', async () => {
    const collateral = await buildCollateral(pki);
    assert.equal(verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    collateral.tcbInfoSignature[5] = collateral.tcbInfoSignature[5]! ^ 1;
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /TCB Info signature/);
    collateral.tcbInfoSignature[5] = collateral.tcbInfoSignature[5]! ^ 1;
    collateral.pckCrl = await createCrl(pki.pckCa, [pki.pck.cert.serialNumber]);
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'CERT_REVOKED');
  });

  it('reused collateral is checked against each verification time', () => {
    assert.equal(verifyIntelQuote(quote, baseCollateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    expectCode(() => verifyIntelQuote(quote, baseCollateral, { at: new Date('2025-07-20T00:00:00Z'), rootCa: rootPem }), 'COLLATERAL_EXPIRED');
    expectCode(() => verifyIntelQuote(quote, baseCollateral, { at: new Date('2025-06-01T00:00:00Z'), rootCa: rootPem }), 'COLLATERAL_INVALID', /not valid before/);
  });

  it('reused collateral is prepared separately per root', async () => {
    assert.equal(verifyIntelQuote(quote, baseCollateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    expectCode(() => verifyIntelQuote(quote, baseCollateral, { at }), 'CERT_CHAIN_INVALID');
  });

  it('fails against the Intel root', () => {
    expectCode(() => verifyIntelQuote(quote, baseCollateral, { at }), 'CERT_CHAIN_INVALID');
  });

  it('PCK listed in the PCK CRL is rejected as revoked', async () => {
    const pckCrl = await createCrl(pki.pckCa, ['0badc0de', pki.pck.cert.serialNumber]);
    expectCode(() => verifyIntelQuote(quote, { ...baseCollateral, pckCrl }, { at, rootCa: rootPem }), 'CERT_REVOKED', /PCK Certificate.*revoked by PCK CRL/);
  });

  it('PCK CA listed in the root CA CRL is rejected as revoked', async () => {
    const rootCaCrl = await createCrl(pki.root, [pki.pckCa.cert.serialNumber]);
    const collateral = await buildCollateral(pki, { rootCaCrl });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'CERT_REVOKED', /PCK Processor CA.*Root CA CRL/);
  });

  it('PCK CRL forged with another key under the same name is rejected', async () => {
    const forger = await createCa('Forger');
    const pckCrl = await createCrl(pki.pckCa, [], { signingKey: forger.keys.privateKey });
    const collateral = await buildCollateral(pki, { pckCrl });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /signature does not verify/);
  });

  it('PCK CRL signed by another CA is rejected', async () => {
    const platformCa = await createCa('Intel SGX PCK Platform CA', pki.root);
    const pckCrl = await createCrl(platformCa);
    const collateral = await buildCollateral(pki, { pckCrl });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /PCK Platform CA/);
  });

  it('PCK CRL of another CA with a matching issuer chain is rejected', async () => {
    const platformCa = await createCa('Intel SGX PCK Platform CA', pki.root);
    const collateral = {
      ...(await buildCollateral(pki, { pckCrl: await createCrl(platformCa) })),
      pckCrlIssuerChain: platformCa.cert.toString('pem') + '\n' + rootPem,
    };
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /PCK CRL is issued by "Intel SGX PCK Platform CA", not by "Intel SGX PCK Processor CA"/);
  });

  it('TCB Info signed by a PCK key is rejected', async () => {
    // The PCK chain leads to the root too, but a PCK key must never be able to vouch for TCB Info.
    const pckChain = [pki.pck.cert, pki.pckCa.cert, pki.root.cert].map((cert) => cert.toString('pem')).join('\n');
    const tcbInfo = tcbInfoText(UP_TO_DATE_LEVELS);
    const collateral: IntelCollateral = {
      ...baseCollateral,
      tcbInfoIssuerChain: pckChain,
      tcbInfo,
      tcbInfoSignature: await signP1363(pki.pck.keys.privateKey, Buffer.from(tcbInfo)),
    };
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'CERT_CHAIN_INVALID', /TCB Info issuer chain has 2 certificates below the root; expected 1/);
  });

  it('QE identity signed by a CA that the root issued is rejected', async () => {
    const qeIdentity = qeIdentityText();
    const collateral: IntelCollateral = {
      ...baseCollateral,
      qeIdentityIssuerChain: pki.pckCa.cert.toString('pem') + '\n' + rootPem,
      qeIdentity,
      qeIdentitySignature: await signP1363(pki.pckCa.keys.privateKey, Buffer.from(qeIdentity)),
    };
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'CERT_CHAIN_INVALID', /expected an "SGX TCB Signing" certificate/);
  });

  it('PCK chain with a CA as its leaf is rejected', async () => {
    // A quote whose "PCK" is the PCK CA itself, signed with the CA's key: two certificates below the root.
    const caAsPck = { ...pki, pck: pki.pckCa, pckCa: pki.root };
    const forged = await buildSgxQuote(caAsPck);
    expectCode(() => verifyIntelQuote(forged, baseCollateral, { at, rootCa: rootPem }), 'CERT_CHAIN_INVALID');
  });

  it('expired PCK CRL is rejected as expired', async () => {
    const pckCrl = await createCrl(pki.pckCa, [], { nextUpdate: new Date('2025-06-30T00:00:00Z') });
    const collateral = await buildCollateral(pki, { pckCrl });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_EXPIRED', /PCK CRL expired at 2025-06-30/);
  });

  it('QE identity with another MRSIGNER is a mismatch', async () => {
    const collateral = await buildCollateral(pki, { qeIdentity: qeIdentityText({ mrsigner: 'AB'.repeat(32) }) });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /MRSIGNER is 8c4f5775.*expected abab/);
  });

  it('QE identity with another ISVPRODID is a mismatch', async () => {
    const collateral = await buildCollateral(pki, { qeIdentity: qeIdentityText({ isvprodid: 2 }) });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /ISVPRODID is 1, expected 2/);
  });

  it('QE report with attributes outside the identity mask is a mismatch', async () => {
    const debugQe = await buildSgxQuote(pki, { qeAttributes: Buffer.from('13000000000000000700000000000000', 'hex') });
    const collateral = await buildCollateral(pki);
    expectCode(() => verifyIntelQuote(debugQe, collateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /ATTRIBUTES/);
  });

  it('QE report with masked-out attribute bits still matches', async () => {
    const other = await buildSgxQuote(pki, { qeAttributes: Buffer.from('15000000000000000700000000000000', 'hex') });
    assert.equal(verifyIntelQuote(other, await buildCollateral(pki), { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
  });

  it('QE identity for TDX is rejected for an SGX quote', async () => {
    const collateral = await buildCollateral(pki, { qeIdentity: qeIdentityText({ id: 'TD_QE' }) });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /TD_QE/);
  });

  it('out-of-date QE turns UpToDate into OutOfDate', async () => {
    const oldQe = await buildSgxQuote(pki, { qeIsvSvn: 6 });
    const result = verifyIntelQuote(oldQe, await buildCollateral(pki), { at, rootCa: rootPem });
    assert.equal(result.tcbStatus, 'OutOfDate');
    assert.deepEqual(result.advisoryIds, ['INTEL-SA-00615']);
  });

  it('revoked QE is rejected', async () => {
    const revokedQe = await buildSgxQuote(pki, { qeIsvSvn: 2 });
    const collateral = await buildCollateral(pki);
    expectCode(() => verifyIntelQuote(revokedQe, collateral, { at, rootCa: rootPem }), 'CERT_REVOKED', /QE identity/);
  });

  it('older platform matches the lower TCB level', async () => {
    const older = await createPki({ sgxComponents: [3, 3, 3, 3, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
    const olderQuote = await buildSgxQuote(older);
    const result = verifyIntelQuote(olderQuote, await buildCollateral(older), { at, rootCa: older.root.cert.toString('pem') });
    assert.equal(result.tcbStatus, 'OutOfDate');
    assert.deepEqual(result.advisoryIds, ['INTEL-SA-00334']);
  });

  it('a component below every level matches no TCB level', async () => {
    // Higher in all but one component: an all-components rule matches no level, a lexicographic one would.
    const mixed = await createPki({ sgxComponents: [9, 9, 9, 9, 255, 254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
    const mixedQuote = await buildSgxQuote(mixed);
    const collateral = await buildCollateral(mixed);
    expectCode(() => verifyIntelQuote(mixedQuote, collateral, { at, rootCa: mixed.root.cert.toString('pem') }), 'TCB_NOT_MATCHED');
  });

  it('PCE SVN below every level matches no TCB level', async () => {
    const oldPce = await createPki({ pceSvn: 9 });
    const oldPceQuote = await buildSgxQuote(oldPce);
    const collateral = await buildCollateral(oldPce);
    expectCode(() => verifyIntelQuote(oldPceQuote, collateral, { at, rootCa: oldPce.root.cert.toString('pem') }), 'TCB_NOT_MATCHED', /PCE SVN 9/);
  });

  it('revoked TCB level is rejected', async () => {
    const collateral = await buildCollateral(pki, { tcbInfo: tcbInfoText([{ sgx: PLATFORM_COMPONENTS, pcesvn: 13, status: 'Revoked', advisoryIDs: ['INTEL-SA-00999'] }]) });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'CERT_REVOKED', /revoked/);
  });

  it('TCB Info for another FMSPC is rejected', async () => {
    const collateral = await buildCollateral(pki, { tcbInfo: tcbInfoText(UP_TO_DATE_LEVELS, { fmspc: '00A067110000' }) });
    expectCode(() => verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }), 'COLLATERAL_INVALID', /FMSPC 00A067110000/);
  });

  it('debug enclave is verified and flagged', async () => {
    const debug = await buildSgxQuote(pki, { attributes: Buffer.from('07000000000000000700000000000000', 'hex') });
    assert.equal(verifyIntelQuote(debug, await buildCollateral(pki), { at, rootCa: rootPem }).measurements.debug, true);
  });

  it('QE report data not binding the attestation key is rejected', async () => {
    // Swap in the attestation key of another quote: the QE report no longer binds it.
    const other = await buildSgxQuote(pki);
    const copy = Buffer.from(quote);
    other.copy(copy, 436 + 64, 436 + 64, 436 + 128);
    expectCode(() => verifyIntelQuote(copy, baseCollateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /attestation key is not bound/);
  });

  it('QE MRSIGNER constant matches the fixture identity', () => {
    assert.equal(JSON.parse(qeIdentityText()).mrsigner.toLowerCase(), QE_MRSIGNER);
  });
});
