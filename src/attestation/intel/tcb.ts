import { CasError } from '../../errors/cas-error.js';
import type { PckExtensions } from './pck-extensions.js';
import type { QeIdentity, TcbInfo, TcbLevel } from './collateral.js';
import type { SgxReportBody, TdReportBody } from './quote.js';

/**
 * TCB level matching and status convergence, following Intel's Quote Verification Library
 * (TcbLevelCheck, TdxModuleCheck, EnclaveReportVerifier). A level matches when every SGX component SVN and
 * the PCE SVN of the PCK certificate (and, for TDX, every TEE_TCB_SVN byte) is at least the level's. The
 * first matching level in the order PCS serves (highest first) applies.
 */
export const TCB_STATUSES = [
  'UpToDate',
  'SWHardeningNeeded',
  'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded',
  'OutOfDate',
  'OutOfDateConfigurationNeeded',
  'TDRelaunchAdvised',
  'TDRelaunchAdvisedConfigurationNeeded',
  'Revoked',
] as const;
export type TcbStatus = (typeof TCB_STATUSES)[number];

function toStatus(value: string, source: string): TcbStatus {
  if (!(TCB_STATUSES as readonly string[]).includes(value)) {
    throw new CasError('COLLATERAL_INVALID', `${source} has the unknown TCB status ${JSON.stringify(value)}`);
  }
  return value as TcbStatus;
}

export interface TcbOutcome {
  status: TcbStatus;
  advisoryIds: string[];
}

/** Finds the platform TCB level for an SGX quote, or for a TDX quote's SGX and TDX parts, and returns its status. */
export function matchPlatformTcb(tcbInfo: TcbInfo, pck: PckExtensions, td: TdReportBody | undefined): TcbOutcome {
  let sgxLevel: TcbLevel | undefined;
  for (const level of tcbInfo.tcbLevels) {
    const sgxOk = level.tcb.sgxtcbcomponents.every((component, i) => pck.sgxTcbComponents[i]! >= component.svn) && pck.pceSvn >= level.tcb.pcesvn;
    if (!sgxOk) continue;
    if (td === undefined) return { status: toStatus(level.tcbStatus, 'TCB Info'), advisoryIds: level.advisoryIDs ?? [] };
    sgxLevel ??= level;
    const tdx = level.tcb.tdxtcbcomponents;
    if (tdx === undefined) throw new CasError('COLLATERAL_INVALID', 'TDX TCB Info has a TCB level without tdxtcbcomponents');
    // With a TDX module of major version > 0, bytes 0 and 1 of TEE_TCB_SVN are the module's SVN and
    // version, which the TDX module identity check covers instead.
    const first = td.teeTcbSvn[1]! > 0 ? 2 : 0;
    if (tdx.every((component, i) => i < first || td.teeTcbSvn[i]! >= component.svn)) {
      return { status: toStatus(level.tcbStatus, 'TCB Info'), advisoryIds: level.advisoryIDs ?? [] };
    }
  }
  const platform = `PCK TCB (SGX components ${pck.sgxTcbComponents.join(',')}, PCE SVN ${pck.pceSvn}${td ? `, TEE_TCB_SVN ${td.teeTcbSvn.toString('hex')}` : ''})`;
  throw new CasError(
    'TCB_NOT_MATCHED',
    `no TCB level of the TCB Info for FMSPC ${tcbInfo.fmspc} matches the platform: ${platform}${sgxLevel ? '; the SGX part matched but no TDX level did' : ''}`,
  );
}

/** Checks the TDX module (MRSIGNERSEAM, SEAM attributes) and returns its TCB status. */
export function checkTdxModule(tcbInfo: TcbInfo, td: TdReportBody, quoteVersion: number): TcbOutcome {
  const moduleVersion = td.teeTcbSvn[1]!;
  const moduleSvn = td.teeTcbSvn[0]!;
  let expected = tcbInfo.tdxModule;
  let levels: { tcb: { isvsvn: number }; tcbStatus: string; advisoryIDs?: string[] | undefined }[] | undefined;
  if (quoteVersion > 3 && moduleVersion > 0) {
    const id = `TDX_${moduleVersion.toString(16).padStart(2, '0').toUpperCase()}`;
    const identity = tcbInfo.tdxModuleIdentities?.find((candidate) => candidate.id.toUpperCase() === id);
    if (identity === undefined) throw new CasError('TCB_NOT_MATCHED', `TCB Info has no TDX module identity ${id} for the TDX module of the quote`);
    expected = identity;
    levels = identity.tcbLevels;
  }
  if (expected === undefined) throw new CasError('COLLATERAL_INVALID', 'TDX TCB Info has no tdxModule');
  if (td.mrSignerSeam.toString('hex') !== expected.mrsigner.toLowerCase()) {
    throw new CasError('EVIDENCE_INVALID', `TDX module MRSIGNERSEAM ${td.mrSignerSeam.toString('hex')} differs from ${expected.mrsigner.toLowerCase()} in the TCB Info`);
  }
  const attributes = Buffer.from(expected.attributes, 'hex');
  if (!td.seamAttributes.equals(Buffer.alloc(8)) || !td.seamAttributes.equals(attributes)) {
    throw new CasError('EVIDENCE_INVALID', `TDX module SEAMATTRIBUTES ${td.seamAttributes.toString('hex')} are not zero or differ from the TCB Info`);
  }
  if (levels === undefined) return { status: 'UpToDate', advisoryIds: [] };
  const level = levels.find((candidate) => moduleSvn >= candidate.tcb.isvsvn);
  if (level === undefined) throw new CasError('TCB_NOT_MATCHED', `no TCB level of the TDX module identity matches TDX module SVN ${moduleSvn}`);
  const status = toStatus(level.tcbStatus, 'TDX module identity');
  return { status, advisoryIds: status === 'UpToDate' ? [] : (level.advisoryIDs ?? []) };
}

/** Matches the QE report against the QE identity and returns the QE's TCB status. */
export function checkQeIdentity(identity: QeIdentity, qeReport: SgxReportBody, teeType: 'sgx' | 'tdx'): TcbOutcome {
  const expectedId = teeType === 'tdx' ? 'TD_QE' : 'QE';
  if (identity.id !== expectedId) {
    throw new CasError('COLLATERAL_INVALID', `QE identity is for ${identity.id}, but a ${teeType.toUpperCase()} quote needs ${expectedId}`);
  }
  const mismatch = (field: string, expected: string, actual: string): never => {
    throw new CasError('EVIDENCE_INVALID', `QE report does not match the QE identity: ${field} is ${actual}, expected ${expected}`, {
      details: { field, expected, actual },
    });
  };
  const masked = (value: Buffer, mask: Buffer): string => Buffer.from(value.map((byte, i) => byte & mask[i]!)).toString('hex');

  const miscMask = Buffer.from(identity.miscselectMask, 'hex');
  if (masked(qeReport.miscSelect, miscMask) !== identity.miscselect.toLowerCase()) {
    mismatch('MISCSELECT (masked)', identity.miscselect.toLowerCase(), masked(qeReport.miscSelect, miscMask));
  }
  const attributesMask = Buffer.from(identity.attributesMask, 'hex');
  if (masked(qeReport.attributes, attributesMask) !== identity.attributes.toLowerCase()) {
    mismatch('ATTRIBUTES (masked)', identity.attributes.toLowerCase(), masked(qeReport.attributes, attributesMask));
  }
  if (qeReport.mrSigner.toString('hex') !== identity.mrsigner.toLowerCase()) {
    mismatch('MRSIGNER', identity.mrsigner.toLowerCase(), qeReport.mrSigner.toString('hex'));
  }
  if (qeReport.isvProdId !== identity.isvprodid) {
    mismatch('ISVPRODID', String(identity.isvprodid), String(qeReport.isvProdId));
  }
  const levels = [...identity.tcbLevels].sort((a, b) => b.tcb.isvsvn - a.tcb.isvsvn);
  const level = levels.find((candidate) => qeReport.isvSvn >= candidate.tcb.isvsvn);
  if (level === undefined) throw new CasError('TCB_NOT_MATCHED', `no TCB level of the QE identity matches QE ISVSVN ${qeReport.isvSvn}`);
  const status = toStatus(level.tcbStatus, 'QE identity');
  if (status !== 'UpToDate' && status !== 'OutOfDate' && status !== 'Revoked') {
    throw new CasError('COLLATERAL_INVALID', `QE identity TCB level has status ${status}, which enclave identities do not use`);
  }
  return { status, advisoryIds: status === 'UpToDate' ? [] : (level.advisoryIDs ?? []) };
}

/** Combines a TCB level status with the TDX module's or the QE's status, as Intel's library does. */
export function convergeStatus(levelStatus: TcbStatus, other: TcbStatus): TcbStatus {
  if (other === 'OutOfDate') {
    if (levelStatus === 'UpToDate' || levelStatus === 'SWHardeningNeeded') return 'OutOfDate';
    if (levelStatus === 'ConfigurationNeeded' || levelStatus === 'ConfigurationAndSWHardeningNeeded') return 'OutOfDateConfigurationNeeded';
  }
  if (other === 'Revoked') return 'Revoked';
  return levelStatus;
}
