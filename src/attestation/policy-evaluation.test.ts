import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { EvidenceResult, Measurements } from './evidence-result.js';
import { evaluateEvidence, type Mismatch } from './policy-evaluation.js';
import type { AttestationSecurity, AttestationVariant } from './requirements.js';

const MRENCLAVE = 'aa'.repeat(32);
const MRSIGNER = 'bb'.repeat(32);
const MRTD = 'cc'.repeat(48);
const strict: AttestationSecurity = { mode: 'hardware', tolerate: [], ignoreAdvisories: [] };

function sgx(overrides: Partial<EvidenceResult> = {}, measurements: Partial<Measurements> = {}): EvidenceResult {
  return {
    teeType: 'sgx',
    tcbStatus: 'UpToDate',
    advisoryIds: [],
    measurements: { debug: false, mrenclave: MRENCLAVE, mrsigner: MRSIGNER, isvprodid: 7, isvsvn: 3, ...measurements },
    reportData: Buffer.alloc(64),
    ...overrides,
  };
}

function tdx(measurements: Partial<Measurements> = {}): EvidenceResult {
  return {
    teeType: 'tdx',
    tcbStatus: 'UpToDate',
    advisoryIds: [],
    measurements: { debug: false, mrtd: MRTD, rtmr0: '00'.repeat(48), rtmr1: '11'.repeat(48), rtmr2: '22'.repeat(48), rtmr3: '33'.repeat(48), tdAttributes: '0000001000000000', xfam: 'e702060000000000', ...measurements },
    reportData: Buffer.alloc(64),
  };
}

function snp(measurements: Partial<Measurements> = {}): EvidenceResult {
  return {
    teeType: 'snp',
    tcbStatus: 'NotEvaluated',
    advisoryIds: [],
    measurements: { debug: false, measurement: 'dd'.repeat(48), policy: String(0x30000), hostData: 'ee'.repeat(32), ...measurements },
    reportData: Buffer.alloc(64),
  };
}

/** Runs evaluateEvidence and returns the mismatches it reports (empty when accepted). */
function mismatches(result: EvidenceResult, variants: AttestationVariant[], security: AttestationSecurity = strict): Mismatch[] {
  try {
    evaluateEvidence(result, variants, security);
    return [];
  } catch (error) {
    assert.ok(isCasError(error, 'ATTESTATION_REJECTED'), `expected ATTESTATION_REJECTED, got ${String(error)}`);
    return (error as CasError).details!['mismatches'] as Mismatch[];
  }
}

describe('evaluateEvidence › SGX variants', () => {
  it('accepts a listed MRENCLAVE', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'mrenclave', mrenclave: ['00'.repeat(32), MRENCLAVE] }]), []);
  });

  it('accepts upper-case hex in the session', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'mrenclave', mrenclave: [MRENCLAVE.toUpperCase()] }]), []);
  });

  it('rejects an unlisted MRENCLAVE with expected and actual', () => {
    const found = mismatches(sgx(), [{ kind: 'mrenclave', mrenclave: ['00'.repeat(32)] }]);
    assert.deepEqual(found, [{ variant: 0, field: 'mrenclave', expected: '00'.repeat(32), actual: MRENCLAVE }]);
  });

  it('message names every mismatching field', () => {
    assert.throws(
      () => evaluateEvidence(sgx(), [{ kind: 'signer', mrsigner: '00'.repeat(32), isvprodid: 8, isvsvnMin: 4 }], strict),
      (error: unknown) => {
        assert.ok(error instanceof CasError);
        assert.match(error.message, /mrsigner is bbbb.* expected 0000/);
        assert.match(error.message, /isvprodid is 7, expected 8/);
        assert.match(error.message, /isvsvn is 3, expected >= 4/);
        return true;
      },
    );
  });

  it('accepts a signer within the ISVSVN range', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'signer', mrsigner: MRSIGNER, isvprodid: 7, isvsvnMin: 3, isvsvnMax: 5 }]), []);
  });

  it('rejects ISVSVN above the maximum', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'signer', mrsigner: MRSIGNER, isvsvnMax: 2 }]), [{ variant: 0, field: 'isvsvn', expected: '<= 2', actual: '3' }]);
  });

  it('compares an exact ISVSVN for equality', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'signer', mrsigner: MRSIGNER, isvsvn: 3 }]), []);
    assert.deepEqual(mismatches(sgx(), [{ kind: 'signer', mrsigner: MRSIGNER, isvsvn: 4 }]), [{ variant: 0, field: 'isvsvn', expected: '4', actual: '3' }]);
  });

  it('accepts when any one variant matches', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'mrenclave', mrenclave: ['00'.repeat(32)] }, { kind: 'signer', mrsigner: MRSIGNER }]), []);
  });

  it('reports every variant when none matches', () => {
    const found = mismatches(sgx(), [{ kind: 'mrenclave', mrenclave: ['00'.repeat(32)] }, { kind: 'signer', mrsigner: '11'.repeat(32) }]);
    assert.deepEqual(found.map((m) => [m.variant, m.field]), [[0, 'mrenclave'], [1, 'mrsigner']]);
  });

  it('rejects a session without variants', () => {
    assert.deepEqual(mismatches(sgx(), []).map((m) => m.field), ['attestation']);
  });

  it('rejects SGX evidence for a TDX variant', () => {
    assert.deepEqual(mismatches(sgx(), [{ kind: 'tdx', mrtd: [MRTD] }]), [{ variant: 0, field: 'teeType', expected: 'tdx', actual: 'sgx' }]);
  });
});

describe('evaluateEvidence › TDX and SNP variants', () => {
  it('accepts matching TDX measurements', () => {
    const variant: AttestationVariant = { kind: 'tdx', mrtd: [MRTD], rtmr0: '00'.repeat(48), rtmr3: '33'.repeat(48), tdAttributes: '0000001000000000', xfam: 'e702060000000000' };
    assert.deepEqual(mismatches(tdx(), [variant]), []);
  });

  it('names each TDX field that differs', () => {
    const variant: AttestationVariant = { kind: 'tdx', mrtd: ['00'.repeat(48)], rtmr1: '99'.repeat(48), rtmr2: '22'.repeat(48), tdAttributes: '0000000000000000', xfam: 'e700000000000000' };
    assert.deepEqual(mismatches(tdx(), [variant]).map((m) => m.field), ['mrtd', 'rtmr1', 'tdAttributes', 'xfam']);
  });

  it('accepts matching SNP measurement, policy and host data', () => {
    assert.deepEqual(mismatches(snp(), [{ kind: 'snp', measurement: ['dd'.repeat(48)], policy: 0x30000n, hostData: 'ee'.repeat(32) }]), []);
    assert.deepEqual(mismatches(snp(), [{ kind: 'snp', policy: 0x30000 }]), []);
  });

  it('names each SNP field that differs', () => {
    const found = mismatches(snp(), [{ kind: 'snp', measurement: ['00'.repeat(48)], policy: 0x30001n, hostData: '00'.repeat(32) }]);
    assert.deepEqual(found.map((m) => m.field), ['measurement', 'policy', 'hostData']);
    assert.deepEqual(found[1], { variant: 0, field: 'policy', expected: '0x30001', actual: '0x30000' });
  });

  it('accepts NotEvaluated only for SNP', () => {
    assert.deepEqual(mismatches(sgx({ tcbStatus: 'NotEvaluated' }), [{ kind: 'signer', mrsigner: MRSIGNER }]).map((m) => m.field), ['tcbStatus']);
  });
});

describe('evaluateEvidence › debug mode', () => {
  it('rejects a debug enclave by default', () => {
    assert.deepEqual(mismatches(sgx({}, { debug: true }), [{ kind: 'signer', mrsigner: MRSIGNER }]).map((m) => m.field), ['debug']);
  });

  it('rejects a debug TD and a debug SNP guest', () => {
    assert.deepEqual(mismatches(tdx({ debug: true }), [{ kind: 'tdx', mrtd: [MRTD] }]).map((m) => m.field), ['debug']);
    assert.deepEqual(mismatches(snp({ debug: true }), [{ kind: 'snp' }]).map((m) => m.field), ['debug']);
  });

  it('accepts debug evidence when debug-mode is tolerated', () => {
    assert.deepEqual(mismatches(sgx({}, { debug: true }), [{ kind: 'signer', mrsigner: MRSIGNER }], { ...strict, tolerate: ['debug-mode'] }), []);
  });
});

describe('evaluateEvidence › TCB status', () => {
  const variant: AttestationVariant[] = [{ kind: 'signer', mrsigner: MRSIGNER }];
  const cases: Array<[string, string[], AttestationSecurity['tolerate'], boolean]> = [
    ['OutOfDate', [], [], false],
    ['OutOfDate', [], ['outdated-tcb'], true],
    ['SWHardeningNeeded', [], [], false],
    ['SWHardeningNeeded', [], ['software-hardening-needed'], true],
    ['ConfigurationNeeded', ['INTEL-SA-00289'], [], false],
    ['ConfigurationNeeded', ['INTEL-SA-00289'], ['insecure-configuration'], true],
    ['ConfigurationNeeded', ['INTEL-SA-00289'], ['hyperthreading'], false],
    ['ConfigurationNeeded', ['INTEL-SA-00161', 'INTEL-SA-00233'], ['hyperthreading'], true],
    ['ConfigurationAndSWHardeningNeeded', [], ['insecure-configuration'], false],
    ['ConfigurationAndSWHardeningNeeded', [], ['software-hardening-needed'], false],
    ['ConfigurationAndSWHardeningNeeded', [], ['insecure-configuration', 'software-hardening-needed'], true],
    ['OutOfDateConfigurationNeeded', [], ['outdated-tcb'], false],
    ['OutOfDateConfigurationNeeded', [], ['outdated-tcb', 'insecure-configuration'], true],
    ['TDRelaunchAdvised', [], ['outdated-tcb'], true],
    ['Revoked', [], ['outdated-tcb', 'software-hardening-needed', 'insecure-configuration', 'hyperthreading', 'debug-mode'], false],
    ['SomethingNew', [], ['outdated-tcb', 'software-hardening-needed', 'insecure-configuration'], false],
  ];
  for (const [status, advisoryIds, tolerate, accepted] of cases) {
    it(`${status} with tolerate [${tolerate.join(', ')}] is ${accepted ? 'accepted' : 'rejected'}`, () => {
      const found = mismatches(sgx({ tcbStatus: status, advisoryIds }), variant, { ...strict, tolerate, ignoreAdvisories: '*' });
      assert.deepEqual(found.length === 0, accepted, JSON.stringify(found));
      if (!accepted) assert.equal(found[0]!.field, 'tcbStatus');
    });
  }
});

describe('evaluateEvidence › advisories', () => {
  const variant: AttestationVariant[] = [{ kind: 'signer', mrsigner: MRSIGNER }];
  const evidence = sgx({ tcbStatus: 'SWHardeningNeeded', advisoryIds: ['INTEL-SA-00289', 'INTEL-SA-00615'] });
  const tolerate: AttestationSecurity['tolerate'] = ['software-hardening-needed'];

  it('rejects advisories that are not ignored, naming them', () => {
    const found = mismatches(evidence, variant, { mode: 'hardware', tolerate, ignoreAdvisories: ['INTEL-SA-00289'] });
    assert.deepEqual(found, [{ field: 'advisoryIds', expected: 'each listed in ignore_advisories', actual: 'not ignored: INTEL-SA-00615' }]);
  });

  it('accepts when every advisory is ignored', () => {
    assert.deepEqual(mismatches(evidence, variant, { mode: 'hardware', tolerate, ignoreAdvisories: ['INTEL-SA-00615', 'INTEL-SA-00289'] }), []);
  });

  it('accepts any advisory with the wildcard', () => {
    assert.deepEqual(mismatches(evidence, variant, { mode: 'hardware', tolerate, ignoreAdvisories: '*' }), []);
  });

  it('reports status, advisories and measurements together', () => {
    const found = mismatches(sgx({ tcbStatus: 'OutOfDate', advisoryIds: ['INTEL-SA-00334'] }, { debug: true }), [{ kind: 'mrenclave', mrenclave: ['00'.repeat(32)] }]);
    assert.deepEqual(found.map((m) => m.field), ['tcbStatus', 'advisoryIds', 'debug', 'mrenclave']);
  });
});
