import { CasError } from '../errors/cas-error.js';
import type { AttestationSecurity, AttestationVariant, Tolerance } from './requirements.js';
import type { EvidenceResult } from './evidence-result.js';

/** One reason why evidence does not satisfy a session's attestation requirements. */
export interface Mismatch {
  /** Index of the attestation variant, or undefined for session-wide checks (TCB, advisories, debug). */
  variant?: number;
  field: string;
  expected: string;
  actual: string;
}

/**
 * Advisories that Intel resolves by disabling hyperthreading (L1TF: INTEL-SA-00161; MDS: INTEL-SA-00233).
 * A `ConfigurationNeeded` status whose advisories are all in this set is tolerated by `hyperthreading`.
 */
export const HYPERTHREADING_ADVISORIES: ReadonlySet<string> = new Set(['INTEL-SA-00161', 'INTEL-SA-00233']);

/**
 * Checks verified evidence against a service's attestation variants and the session's security settings.
 * Throws ATTESTATION_REJECTED naming every mismatch (with expected and actual values) when the evidence
 * satisfies no variant or fails a session-wide check. Evidence must satisfy the TCB, advisory and debug
 * checks and at least one variant.
 */
export function evaluateEvidence(result: EvidenceResult, variants: AttestationVariant[], security: AttestationSecurity): void {
  const mismatches = [...checkTcb(result, security), ...checkAdvisories(result, security), ...checkDebug(result, security.tolerate)];

  const variantMismatches: Mismatch[][] = variants.map((variant, index) => matchVariant(result, variant).map((mismatch) => ({ variant: index, ...mismatch })));
  if (variants.length === 0) {
    mismatches.push({ field: 'attestation', expected: 'at least one attestation variant (mrenclave, signer, tdx or snp)', actual: 'none' });
  } else if (variantMismatches.every((list) => list.length > 0)) {
    mismatches.push(...variantMismatches.flat());
  }

  if (mismatches.length > 0) {
    const text = mismatches.map(describe).join('; ');
    throw new CasError('ATTESTATION_REJECTED', `evidence does not satisfy the session's attestation requirements: ${text}`, {
      details: { mismatches, teeType: result.teeType, tcbStatus: result.tcbStatus },
    });
  }
}

function describe(mismatch: Mismatch): string {
  const where = mismatch.variant === undefined ? '' : `variant ${mismatch.variant}: `;
  return `${where}${mismatch.field} is ${mismatch.actual}, expected ${mismatch.expected}`;
}

/**
 * Tolerances that each Intel TCB status needs. `ConfigurationNeeded` is satisfied by
 * `insecure-configuration`, or by `hyperthreading` when every advisory is a hyperthreading advisory.
 */
const STATUS_TOLERANCES: Record<string, Array<Tolerance | 'configuration'>> = {
  UpToDate: [],
  NotEvaluated: [],
  SWHardeningNeeded: ['software-hardening-needed'],
  ConfigurationNeeded: ['configuration'],
  ConfigurationAndSWHardeningNeeded: ['configuration', 'software-hardening-needed'],
  OutOfDate: ['outdated-tcb'],
  OutOfDateConfigurationNeeded: ['outdated-tcb', 'configuration'],
  TDRelaunchAdvised: ['outdated-tcb'],
  TDRelaunchAdvisedConfigurationNeeded: ['outdated-tcb', 'configuration'],
};

function checkTcb(result: EvidenceResult, security: AttestationSecurity): Mismatch[] {
  const needed = STATUS_TOLERANCES[result.tcbStatus];
  if (result.tcbStatus === 'NotEvaluated' && result.teeType !== 'snp') {
    return [{ field: 'tcbStatus', expected: 'an evaluated TCB status', actual: 'NotEvaluated' }];
  }
  if (needed === undefined) {
    // Revoked and unknown statuses are never tolerated.
    return [{ field: 'tcbStatus', expected: 'UpToDate or a tolerated status', actual: `${result.tcbStatus} (never tolerated)` }];
  }
  const tolerate = new Set(security.tolerate);
  const missing: string[] = [];
  for (const need of needed) {
    if (need === 'configuration') {
      const onlyHyperthreading = result.advisoryIds.length > 0 && result.advisoryIds.every((id) => HYPERTHREADING_ADVISORIES.has(id));
      if (!tolerate.has('insecure-configuration') && !(onlyHyperthreading && tolerate.has('hyperthreading'))) {
        missing.push(onlyHyperthreading ? 'insecure-configuration or hyperthreading' : 'insecure-configuration');
      }
    } else if (!tolerate.has(need)) {
      missing.push(need);
    }
  }
  if (missing.length === 0) return [];
  return [{ field: 'tcbStatus', expected: `UpToDate, or tolerate: [${missing.join(', ')}]`, actual: result.tcbStatus }];
}

function checkAdvisories(result: EvidenceResult, security: AttestationSecurity): Mismatch[] {
  if (security.ignoreAdvisories === '*') return [];
  const ignored = new Set(security.ignoreAdvisories);
  const unignored = result.advisoryIds.filter((id) => !ignored.has(id));
  if (unignored.length === 0) return [];
  return [{ field: 'advisoryIds', expected: `each listed in ignore_advisories`, actual: `not ignored: ${unignored.join(', ')}` }];
}

function checkDebug(result: EvidenceResult, tolerate: Tolerance[]): Mismatch[] {
  if (!result.measurements.debug || tolerate.includes('debug-mode')) return [];

  let subject = 'guest';
  if (result.teeType === 'sgx') subject = 'enclave';
  else if (result.teeType === 'tdx') subject = 'TD';

  return [{ field: 'debug', expected: `a production ${subject}, or tolerate: [debug-mode]`, actual: `debug ${subject}` }];
}

type VariantMismatch = Omit<Mismatch, 'variant'>;

function matchVariant(result: EvidenceResult, variant: AttestationVariant): VariantMismatch[] {
  const m = result.measurements;
  const expectedTee = variant.kind === 'mrenclave' || variant.kind === 'signer' ? 'sgx' : variant.kind;
  if (result.teeType !== expectedTee) return [{ field: 'teeType', expected: expectedTee, actual: result.teeType }];

  const out: VariantMismatch[] = [];
  const equal = (field: string, expected: string | undefined, actual: string | undefined): void => {
    if (expected !== undefined && expected.toLowerCase() !== actual) out.push({ field, expected: expected.toLowerCase(), actual: actual ?? 'absent' });
  };
  const oneOf = (field: string, expected: string[] | undefined, actual: string | undefined): void => {
    if (expected === undefined) return;
    const list = expected.map((value) => value.toLowerCase());
    if (actual === undefined || !list.includes(actual)) out.push({ field, expected: list.length === 1 ? list[0]! : `one of [${list.join(', ')}]`, actual: actual ?? 'absent' });
  };

  switch (variant.kind) {
    case 'mrenclave':
      oneOf('mrenclave', variant.mrenclave, m.mrenclave);
      break;
    case 'signer': {
      equal('mrsigner', variant.mrsigner, m.mrsigner);
      const isvprodid = m.isvprodid ?? -1;
      const isvsvn = m.isvsvn ?? -1;
      if (variant.isvprodid !== undefined && variant.isvprodid !== isvprodid) out.push({ field: 'isvprodid', expected: String(variant.isvprodid), actual: String(isvprodid) });
      if (variant.isvsvn !== undefined && variant.isvsvn !== isvsvn) out.push({ field: 'isvsvn', expected: String(variant.isvsvn), actual: String(isvsvn) });
      if (variant.isvsvnMin !== undefined && isvsvn < variant.isvsvnMin) out.push({ field: 'isvsvn', expected: `>= ${variant.isvsvnMin}`, actual: String(isvsvn) });
      if (variant.isvsvnMax !== undefined && isvsvn > variant.isvsvnMax) out.push({ field: 'isvsvn', expected: `<= ${variant.isvsvnMax}`, actual: String(isvsvn) });
      break;
    }
    case 'tdx':
      oneOf('mrtd', variant.mrtd, m.mrtd);
      equal('rtmr0', variant.rtmr0, m.rtmr0);
      equal('rtmr1', variant.rtmr1, m.rtmr1);
      equal('rtmr2', variant.rtmr2, m.rtmr2);
      equal('rtmr3', variant.rtmr3, m.rtmr3);
      equal('tdAttributes', variant.tdAttributes, m.tdAttributes);
      equal('xfam', variant.xfam, m.xfam);
      break;
    case 'snp':
      oneOf('measurement', variant.measurement, m.measurement);
      if (variant.policy !== undefined && (m.policy === undefined || BigInt(variant.policy) !== BigInt(m.policy))) {
        out.push({ field: 'policy', expected: `0x${BigInt(variant.policy).toString(16)}`, actual: m.policy === undefined ? 'absent' : `0x${BigInt(m.policy).toString(16)}` });
      }
      equal('hostData', variant.hostData, m.hostData);
      break;
  }
  return out;
}
