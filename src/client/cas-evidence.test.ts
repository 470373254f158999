import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startPcs, stop } from '../attestation/collateral/test-support.js';
import { collateralKeyForQuote, parseCollateralFile, reportDataFor, verifyIntelQuote } from '../attestation/index.js';
import { CasError } from '../errors/cas-error.js';
import { collectCasEvidence } from '../server/evidence/cas-evidence.js';
import { hardwareEvidence } from '../server/evidence/hardware.js';
import { tempDir } from '../server/testing/cas-process.js';
import { sharedDir } from '../testing/paths.js';
import { certificateDer, createSelfSignedCertificate } from '../tls/certificates.js';
import { parseCasExpectations, verifyCasHardwareEvidence, type VerifyCasEvidenceOptions } from './cas-evidence.js';

// The client side of `cas attest` for a hardware-mode CAS, with a recorded SGX quote standing in for the
// CAS's evidence (no TEE here): collateral from a loopback PCS-like server, the clock at the sample's time.

const samples = join(sharedDir(), 'attestation-samples');
const quote = readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote'));
const collateral = parseCollateralFile(readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote_collateral.json'), 'utf8'));
const at = new Date(1751328000 * 1000);
const recorded = verifyIntelQuote(quote, collateral, { at });
const NONCE = '5a'.repeat(32);

async function rejection(action: () => Promise<unknown>): Promise<CasError> {
  try {
    await action();
  } catch (error) {
    assert.ok(error instanceof CasError, `expected a CasError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

describe('cas attest: hardware evidence of a CAS', () => {
  let pcs: Awaited<ReturnType<typeof startPcs>>;
  let casCertificate: Buffer;
  let options: (expect: string[]) => VerifyCasEvidenceOptions;

  before(async () => {
    pcs = await startPcs(collateral, collateralKeyForQuote(quote));
    casCertificate = certificateDer((await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 })).certificatePem);
    options = (expect) => ({
      nonce: NONCE,
      certificateDer: casCertificate,
      expectations: parseCasExpectations(expect, 'insecure-configuration, software-hardening-needed', '*'),
      collateral: { pccsUrl: pcs.baseUrl },
      now: () => at,
      // The recorded quote stands for this nonce and this certificate only; anything else gets the real binding.
      reportDataBinding: (nonce, der) => (nonce.toString('hex') === NONCE && der.equals(casCertificate) ? recorded.reportData : reportDataFor(nonce, der)),
    });
  });

  after(async () => {
    await stop(pcs.server);
  });

  it('accepts the expected MRENCLAVE', async () => {
    const result = await verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), options([`mrenclave=${recorded.measurements.mrenclave!}`]));
    assert.equal(result.teeType, 'sgx');
    assert.equal(result.tcbStatus, 'ConfigurationAndSWHardeningNeeded');
  });

  it('accepts the expected MRSIGNER as an alternative', async () => {
    const result = await verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), options([`mrenclave=${'00'.repeat(32)}`, `mrsigner=${recorded.measurements.mrsigner!.toUpperCase()}`]));
    assert.equal(result.measurements.mrsigner, recorded.measurements.mrsigner);
  });

  it('rejects evidence bound to another certificate (a machine in the middle)', async () => {
    const other = certificateDer((await createSelfSignedCertificate({ commonName: 'mitm', usage: 'server', validDays: 1 })).certificatePem);
    const error = await rejection(() => verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), { ...options([`mrenclave=${recorded.measurements.mrenclave!}`]), certificateDer: other }));
    assert.equal(error.code, 'EVIDENCE_INVALID');
    assert.match(error.message, /does not bind this nonce and the certificate the CAS presented/);
  });

  it('rejects evidence for another nonce', async () => {
    const error = await rejection(() => verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), { ...options([`mrenclave=${recorded.measurements.mrenclave!}`]), nonce: 'a5'.repeat(32) }));
    assert.equal(error.code, 'EVIDENCE_INVALID');
  });

  it('rejects another MRENCLAVE, naming expected and actual values', async () => {
    const expected = 'cd'.repeat(32);
    const error = await rejection(() => verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), options([`mrenclave=${expected}`])));
    assert.equal(error.code, 'ATTESTATION_REJECTED');
    assert.deepEqual(error.details?.['mismatches'], [{ variant: 0, field: 'mrenclave', expected, actual: recorded.measurements.mrenclave }]);
  });

  it('refuses hardware evidence without an expected measurement', async () => {
    const error = await rejection(() => verifyCasHardwareEvidence(hardwareEvidence('sgx', quote), options([])));
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, /--expect mrenclave=HEX/);
  });

  it('rejects malformed --expect and --tolerate values', () => {
    assert.throws(() => parseCasExpectations(['mrenclave=12'], undefined, undefined), /64 hex digits/);
    assert.throws(() => parseCasExpectations(['isvsvn=1'], undefined, undefined), /KEY one of mrenclave, mrsigner, mrtd, measurement/);
    assert.throws(() => parseCasExpectations([], 'everything', undefined), /--tolerate "everything"/);
    assert.deepEqual(parseCasExpectations([`mrtd=${'AB'.repeat(48)}`], 'outdated-tcb', 'INTEL-SA-00615'), {
      variants: [{ kind: 'tdx', mrtd: ['ab'.repeat(48)] }],
      security: { tolerate: ['outdated-tcb'], ignoreAdvisories: ['INTEL-SA-00615'] },
    });
  });
});

describe('evidence of a hardware-mode CAS', () => {
  it('collects from the detected source with the CAS binding', async () => {
    const gramine = join(tempDir('cas-gramine'), 'attestation');
    mkdirSync(gramine, { recursive: true });
    writeFileSync(join(gramine, 'user_report_data'), '');
    writeFileSync(join(gramine, 'quote'), quote);
    const certificate = certificateDer((await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 })).certificatePem);
    const evidence = await collectCasEvidence(NONCE, certificate, { gramineAttestationPath: gramine, configfsTsmPath: join(gramine, 'absent') });
    assert.deepEqual(evidence, { type: 'sgx', quote: quote.toString('base64') });
    assert.deepEqual(readFileSync(join(gramine, 'user_report_data')), reportDataFor(Buffer.from(NONCE, 'hex'), certificate));
  });

  it('reports a hardware CAS without a TEE source', async () => {
    const absent = join(tempDir('cas-none'), 'absent');
    await assert.rejects(collectCasEvidence(NONCE, Buffer.from('cert'), { gramineAttestationPath: absent, configfsTsmPath: absent }), (error) => error instanceof CasError && error.code === 'UNAVAILABLE');
  });
});
