import { createHash, createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto';
import { CasError } from '../../errors/cas-error.js';
import type { EvidenceResult, Measurements } from '../evidence-result.js';
import { INTEL_SGX_ROOT_CA_PEM } from '../intel-root-ca.js';
import { certificateFromPemOrDer, certificatesFromPem, checkCrl, checkNotRevoked, parseCrl, verifyChain, type Certificate, type Crl } from '../x509.js';
import { parseSignedJson, qeIdentitySchema, tcbInfoSchema, type IntelCollateral } from './collateral.js';
import { parsePckExtensions } from './pck-extensions.js';
import { parseQuote, TEE_TYPE_TDX, type DcapQuote, type SgxReportBody, type TdReportBody } from './quote.js';
import { checkQeIdentity, checkTdxModule, convergeStatus, matchPlatformTcb } from './tcb.js';

export interface IntelVerifyOptions {
  /** The time at which certificates, CRLs, TCB Info and QE identity must be valid. */
  at: Date;
  /** The trusted Intel SGX Root CA (PEM or DER); the embedded Intel certificate when absent. */
  rootCa?: string | Buffer;
}

const ROOT_CA_CRL = 'Intel SGX Root CA CRL';

/**
 * Verifies an Intel SGX (quote v3, v5) or TDX (quote v4, v5) DCAP quote against its collateral, without I/O.
 * Throws CasError (EVIDENCE_INVALID, CERT_CHAIN_INVALID, CERT_REVOKED, COLLATERAL_INVALID,
 * COLLATERAL_EXPIRED, TCB_NOT_MATCHED) on the first failed check; a revoked platform or QE TCB raises
 * CERT_REVOKED. Bytes after the end of the quote are ignored.
 */
export function verifyIntelQuote(quoteBytes: Buffer, collateral: IntelCollateral, options: IntelVerifyOptions): EvidenceResult {
  const { at } = options;
  const quote = parseQuote(quoteBytes);
  const teeType = quote.header.teeType === TEE_TYPE_TDX ? 'tdx' : 'sgx';
  const root = certificateFromPemOrDer(options.rootCa ?? INTEL_SGX_ROOT_CA_PEM, 'root CA');

  // The PCK certificate chain from the quote, and its revocation status.
  const pckPath = verifyChain(certificatesFromPem(quote.pckChainPem, 'quote PCK certificate chain'), { root, at, what: 'PCK certificate chain' });
  const rootCrl = parseCrl(collateral.rootCaCrl);
  checkCrl(rootCrl, root, at, ROOT_CA_CRL);
  checkIntermediates(pckPath, root, rootCrl);
  checkShape(pckPath, ['SGX PCK Certificate', 'SGX PCK'], 'PCK certificate chain');
  const pck = pckPath[0]!;
  const pckCrl = parseCrl(collateral.pckCrl);
  const pckCrlPath = verifyIssuedChain(certificatesFromPem(collateral.pckCrlIssuerChain, 'PCK CRL issuer chain'), root, rootCrl, at, 'PCK CRL issuer chain');
  checkShape(pckCrlPath, ['SGX PCK'], 'PCK CRL issuer chain');
  const pckCrlIssuer = pckCrlPath[0]!;
  if (!pckCrlIssuer.subject.equals(pckCrl.issuer)) {
    throw new CasError('COLLATERAL_INVALID', `the PCK CRL issuer chain is for "${pckCrlIssuer.subjectCn}", but the PCK CRL names "${pckCrl.issuerCn}"`);
  }
  checkCrl(pckCrl, pckPath[1]!, at, 'PCK CRL');
  checkNotRevoked(pck, pckCrl, 'PCK CRL');

  // TCB Info and QE identity: signed by the TCB Signing certificate over the exact JSON text.
  const tcbInfo = parseSignedJson(collateral.tcbInfo, tcbInfoSchema, 'TCB Info');
  const tcbSigner = tcbSigningCertificate(collateral.tcbInfoIssuerChain, root, rootCrl, at, 'TCB Info issuer chain');
  checkSignedJson(collateral.tcbInfo, collateral.tcbInfoSignature, tcbSigner, 'TCB Info');
  checkWindow(tcbInfo.issueDate, tcbInfo.nextUpdate, at, `TCB Info for FMSPC ${tcbInfo.fmspc}`);

  const qeIdentity = parseSignedJson(collateral.qeIdentity, qeIdentitySchema, 'QE identity');
  const qeSigner = tcbSigningCertificate(collateral.qeIdentityIssuerChain, root, rootCrl, at, 'QE identity issuer chain');
  checkSignedJson(collateral.qeIdentity, collateral.qeIdentitySignature, qeSigner, 'QE identity');
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

/** Verifies a chain to the root and checks the certificates that the root issued against the root CA CRL. */
function verifyIssuedChain(chain: Certificate[], root: Certificate, rootCrl: Crl, at: Date, what: string): Certificate[] {
  const path = verifyChain(chain, { root, at, what });
  checkIntermediates(path, root, rootCrl);
  return path;
}

/**
 * Checks that a verified path has one certificate per expected role below the root, each with the expected
 * common name, and that only the last one below the root is a CA. A PCK chain is PCK certificate, PCK
 * Processor or Platform CA, root; a TCB signing chain is TCB Signing certificate, root. Without this, any
 * key that chains to the root, such as a platform's PCK key, could sign TCB Info.
 */
function checkShape(path: Certificate[], commonNames: string[], what: string): void {
  if (path.length !== commonNames.length + 1) {
    throw new CasError('CERT_CHAIN_INVALID', `${what} has ${path.length - 1} certificates below the root; expected ${commonNames.length}`);
  }
  commonNames.forEach((expected, i) => {
    const cert = path[i]!;
    if (!cert.subjectCn.includes(expected)) {
      throw new CasError('CERT_CHAIN_INVALID', `${what}: certificate ${i} is "${cert.subjectCn}", expected an "${expected}" certificate`);
    }
    if (i === 0 && commonNames.length > 1 && cert.isCa) {
      throw new CasError('CERT_CHAIN_INVALID', `${what}: the leaf "${cert.subjectCn}" is a CA certificate`);
    }
  });
}

/** Verifies a TCB Info or QE identity issuer chain and returns its Intel SGX TCB Signing certificate. */
function tcbSigningCertificate(chainPem: string, root: Certificate, rootCrl: Crl, at: Date, what: string): Certificate {
  const path = verifyIssuedChain(certificatesFromPem(chainPem, what), root, rootCrl, at, what);
  checkShape(path, ['SGX TCB Signing'], what);
  if (path[0]!.isCa) throw new CasError('CERT_CHAIN_INVALID', `${what}: the TCB Signing certificate "${path[0]!.subjectCn}" is a CA certificate`);
  return path[0]!;
}

/** Checks the certificates that the root issued against the root CA CRL. */
function checkIntermediates(path: Certificate[], root: Certificate, rootCrl: Crl): void {
  for (let i = 0; i < path.length - 1; i++) {
    if (path[i + 1] === root) checkNotRevoked(path[i]!, rootCrl, ROOT_CA_CRL);
  }
}

function checkSignedJson(text: string, signature: Buffer, signer: Certificate, what: string): void {
  if (signature.length !== 64) throw new CasError('COLLATERAL_INVALID', `${what} signature has ${signature.length} bytes; expected 64 (r || s)`);
  if (!verifySignature('sha256', Buffer.from(text, 'utf8'), { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, signature)) {
    throw new CasError('COLLATERAL_INVALID', `${what} signature does not verify with the key of "${signer.subjectCn}" over the JSON text as served`);
  }
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

function attestationPublicKey(raw: Buffer): KeyObject {
  try {
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: raw.subarray(0, 32).toString('base64url'), y: raw.subarray(32, 64).toString('base64url') },
      format: 'jwk',
    });
  } catch (error) {
    throw new CasError('EVIDENCE_INVALID', 'the attestation key in the quote is not a valid P-256 point', { cause: error });
  }
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
