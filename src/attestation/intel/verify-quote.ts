import { createHash, createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { CasError } from '../../errors/cas-error.js';
import type { EvidenceResult, Measurements } from '../evidence-result.js';
import { LruCache } from '../lru.js';
import { checkChainValidity, checkCrlIssuer, checkCrlWindow, checkNotRevoked, verifyChainSignatures } from '../x509.js';
import type { IntelCollateral } from './collateral.js';
import { parsePckChain } from './pck-chain.js';
import { checkIntermediates, checkShape, prepareIntelCollateral, ROOT_CA_CRL } from './prepared-collateral.js';
import { parsePckExtensions } from './pck-extensions.js';
import { parseQuote, TEE_TYPE_TDX, type DcapQuote, type SgxReportBody, type TdReportBody } from './quote.js';
import { checkQeIdentity, checkTdxModule, convergeStatus, matchPlatformTcb } from './tcb.js';

export interface IntelVerifyOptions {
  /** The time at which certificates, CRLs, TCB Info and QE identity must be valid. */
  at: Date;
  /** The trusted Intel SGX Root CA (PEM or DER); the embedded Intel certificate when absent. */
  rootCa?: string | Buffer;
}

/**
 * Verifies an Intel SGX (quote v3, v4, v5) or TDX (quote v4, v5) DCAP quote against its collateral, without
 * I/O. Throws CasError (EVIDENCE_INVALID, CERT_CHAIN_INVALID, CERT_REVOKED, COLLATERAL_INVALID,
 * COLLATERAL_EXPIRED, TCB_NOT_MATCHED) on the first failed check; a revoked platform or QE TCB raises
 * CERT_REVOKED. Bytes after the end of the quote are ignored.
 *
 * The time-independent checks of the collateral run once per collateral object (see
 * `prepareIntelCollateral`); everything that depends on the quote or the time runs on every call.
 */
export function verifyIntelQuote(quoteBytes: Buffer, collateral: IntelCollateral, options: IntelVerifyOptions): EvidenceResult {
  return verifyParsedIntelQuote(parseQuote(quoteBytes), collateral, options);
}

/**
 * Runs every check of `verifyIntelQuote` on a quote that the caller has parsed, so a caller that also
 * needs the collateral key parses it once. The parsed quote's buffers must not change until this returns.
 */
export function verifyParsedIntelQuote(quote: DcapQuote, collateral: IntelCollateral, options: IntelVerifyOptions): EvidenceResult {
  const { at } = options;
  const teeType = quote.header.teeType === TEE_TYPE_TDX ? 'tdx' : 'sgx';
  const prepared = prepareIntelCollateral(collateral, options.rootCa);
  const { root, rootCrl, pckCrl, tcbInfo, qeIdentity } = prepared;

  // The PCK certificate chain from the quote, and its revocation status.
  const pckPath = verifyChainSignatures(parsePckChain(quote.pckChainPem), root, 'PCK certificate chain', prepared.verified);
  checkShape(pckPath, ['SGX PCK Certificate', 'SGX PCK'], 'PCK certificate chain');
  checkChainValidity(pckPath, at, 'PCK certificate chain');
  checkCrlWindow(rootCrl, at, ROOT_CA_CRL);
  checkIntermediates(pckPath, root, rootCrl);
  const pck = pckPath[0]!;
  checkCrlIssuer(pckCrl, pckPath[1]!, 'PCK CRL', prepared.verified);
  checkCrlWindow(pckCrl, at, 'PCK CRL');
  checkNotRevoked(pck, pckCrl, 'PCK CRL');

  // The collateral's own certificates, TCB Info and QE identity must be valid now.
  for (const { what, path } of prepared.paths) checkChainValidity(path, at, what);
  checkWindow(tcbInfo.issueDate, tcbInfo.nextUpdate, at, `TCB Info for FMSPC ${tcbInfo.fmspc}`);
  checkWindow(qeIdentity.issueDate, qeIdentity.nextUpdate, at, `QE identity ${qeIdentity.id}`);

  // The TCB Info must describe this platform and this kind of TEE.
  const pckTcb = parsePckExtensions(pck);
  if (tcbInfo.id !== teeType.toUpperCase()) {
    throw new CasError('COLLATERAL_INVALID', `TCB Info is for ${tcbInfo.id}, but the quote is a ${teeType.toUpperCase()} quote`);
  }
  if (pckTcb.fmspc.toString('hex') !== tcbInfo.fmspc.toLowerCase()) {
    throw new CasError('COLLATERAL_INVALID', `TCB Info is for FMSPC ${tcbInfo.fmspc}, but the PCK certificate has FMSPC ${pckTcb.fmspc.toString('hex').toUpperCase()}`);
  }
  if (pckTcb.pceId.toString('hex') !== tcbInfo.pceId.toLowerCase()) {
    throw new CasError('COLLATERAL_INVALID', `TCB Info is for PCE-ID ${tcbInfo.pceId}, but the PCK certificate has PCE-ID ${pckTcb.pceId.toString('hex').toUpperCase()}`);
  }
  const td = quote.body.kind === 'sgx' ? undefined : quote.body.report;
  const tdxModule = td === undefined ? undefined : checkTdxModule(tcbInfo, td, quote.header.version);

  // The QE report is signed by the PCK key and binds the attestation key.
  if (!verifySignature('sha256', quote.qeReport.raw, { key: pck.publicKey, dsaEncoding: 'ieee-p1363' }, quote.qeReportSignature)) {
    throw new CasError('EVIDENCE_INVALID', 'the QE report signature does not verify with the PCK certificate key');
  }
  const keyHash = createHash('sha256').update(quote.attestationKey).update(quote.qeAuthData).digest();
  if (!keyHash.equals(quote.qeReport.reportData.subarray(0, 32))) {
    throw new CasError('EVIDENCE_INVALID', 'the QE report data does not match SHA-256(attestation key || QE authentication data): the attestation key is not bound to the QE');
  }
  const qe = checkQeIdentity(qeIdentity, quote.qeReport, teeType);

  // The quote itself is signed by the attestation key.
  if (!verifySignature('sha256', quote.signedBytes, { key: attestationPublicKey(quote.attestationKey), dsaEncoding: 'ieee-p1363' }, quote.signature)) {
    throw new CasError('EVIDENCE_INVALID', 'the quote signature does not verify with the attestation key');
  }

  // TCB status: the platform level, converged with the TDX module and QE statuses.
  const platform = matchPlatformTcb(tcbInfo, pckTcb, td);
  let status = platform.status;
  const advisoryIds = [...platform.advisoryIds];
  if (tdxModule !== undefined) {
    status = convergeStatus(status, tdxModule.status);
    advisoryIds.push(...tdxModule.advisoryIds);
  }
  status = convergeStatus(status, qe.status);
  advisoryIds.push(...qe.advisoryIds);
  if (status === 'Revoked') {
    throw new CasError('CERT_REVOKED', `the TCB of this platform is revoked (TCB Info for FMSPC ${tcbInfo.fmspc}${qe.status === 'Revoked' ? ', QE identity' : ''})`);
  }
  // NOTE: the TD relaunch check for TD 1.5 reports (TEE_TCB_SVN2) is not implemented. Such quotes get the
  // status of their TDX TCB level, never TDRelaunchAdvised.

  return {
    teeType,
    tcbStatus: status,
    advisoryIds: [...new Set(advisoryIds)].sort(),
    measurements: quote.body.kind === 'sgx' ? sgxMeasurements(quote.body.report) : tdMeasurements(quote.body.report),
    reportData: Buffer.from(quote.body.report.reportData),
  };
}

function checkWindow(issueDate: string, nextUpdate: string, at: Date, what: string): void {
  if (at < new Date(issueDate)) {
    throw new CasError('COLLATERAL_INVALID', `${what} is issued at ${issueDate}, after the verification time ${at.toISOString()}`);
  }
  if (at > new Date(nextUpdate)) {
    throw new CasError('COLLATERAL_EXPIRED', `${what} expired at ${nextUpdate} (nextUpdate); fetch fresh collateral`, {
      details: { item: what, expiredAt: nextUpdate },
    });
  }
}

// DER SubjectPublicKeyInfo header for an uncompressed P-256 point (id-ecPublicKey, prime256v1), RFC 5480.
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/**
 * Attestation public keys by their 64 raw bytes (x || y, as latin1 text). The QE keeps one attestation key
 * across many quotes, and in benchmark figure 2 createPublicKey took about twice as long as one ECDSA P-256
 * verification. A key object depends only on these bytes, and the quote signature is still verified on
 * every call. The 1024 entries match the PCK chain cache: a platform uses one attestation key at a time.
 */
const attestationKeys = new LruCache<string, KeyObject>(1024);

export function attestationPublicKey(raw: Buffer): KeyObject {
  return attestationKeys.getOrCompute(raw.toString('latin1'), () => {
    try {
      return createPublicKey({ key: Buffer.concat([P256_SPKI_PREFIX, Buffer.from([0x04]), raw]), format: 'der', type: 'spki' });
    } catch (error) {
      throw new CasError('EVIDENCE_INVALID', 'the attestation key in the quote is not a valid P-256 point', { cause: error });
    }
  });
}

function sgxMeasurements(report: SgxReportBody): Measurements {
  return {
    debug: (report.attributes[0]! & 0x02) !== 0,
    mrenclave: report.mrEnclave.toString('hex'),
    mrsigner: report.mrSigner.toString('hex'),
    isvprodid: report.isvProdId,
    isvsvn: report.isvSvn,
    attributes: report.attributes.toString('hex'),
    miscselect: report.miscSelect.toString('hex'),
    cpusvn: report.cpuSvn.toString('hex'),
  };
}

function tdMeasurements(report: TdReportBody): Measurements {
  return {
    // TUD.DEBUG is bit 0 of TD attributes.
    debug: (report.tdAttributes[0]! & 0x01) !== 0,
    mrtd: report.mrTd.toString('hex'),
    rtmr0: report.rtmr[0].toString('hex'),
    rtmr1: report.rtmr[1].toString('hex'),
    rtmr2: report.rtmr[2].toString('hex'),
    rtmr3: report.rtmr[3].toString('hex'),
    tdAttributes: report.tdAttributes.toString('hex'),
    xfam: report.xfam.toString('hex'),
    mrseam: report.mrSeam.toString('hex'),
    mrsignerseam: report.mrSignerSeam.toString('hex'),
    mrconfigid: report.mrConfigId.toString('hex'),
    mrowner: report.mrOwner.toString('hex'),
    mrownerconfig: report.mrOwnerConfig.toString('hex'),
    teeTcbSvn: report.teeTcbSvn.toString('hex'),
  };
}

export type { DcapQuote };
