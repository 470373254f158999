import { verify as verifySignature } from 'node:crypto';
import { CasError } from '../../errors/cas-error.js';
import { INTEL_SGX_ROOT_CA_PEM } from '../intel-root-ca.js';
import {
  certificateFromPemOrDer,
  certificatesFromPem,
  checkCrlIssuer,
  checkNotRevoked,
  parseCrl,
  verifyChainSignatures,
  VerifiedSignatures,
  type Certificate,
  type Crl,
} from '../x509.js';
import { parseSignedJson, qeIdentitySchema, tcbInfoSchema, type IntelCollateral, type QeIdentity, type TcbInfo } from './collateral.js';

export const ROOT_CA_CRL = 'Intel SGX Root CA CRL';

/**
 * Collateral whose time-independent checks have passed. Every chain links to the trusted root with valid
 * signatures and the expected roles, and both CRLs are signed by their issuers. The certificates that the
 * root issued are not revoked, and the TCB Signing certificate signed TCB Info and QE identity. What
 * depends on the time (validity periods, CRL and JSON windows) is left to `verifyIntelQuote`, which checks
 * it on every call.
 */
export interface PreparedCollateral {
  source: IntelCollateral;
  root: Certificate;
  rootCrl: Crl;
  pckCrl: Crl;
  tcbInfo: TcbInfo;
  qeIdentity: QeIdentity;
  /** Verified paths whose validity periods must hold at verification time, by name. */
  paths: Array<{ what: string; path: Certificate[] }>;
  /** Signature checks that passed, reused for the PCK chains of later quotes. */
  verified: VerifiedSignatures;
}

// Prepared collateral per collateral object and trusted root. Every lookup compares the collateral's
// content with what was prepared, so a caller that changes the object in place gets a fresh preparation.
const preparedByCollateral = new WeakMap<IntelCollateral, Map<string, PreparedCollateral>>();

/** Returns prepared collateral for `collateral` and `rootCa`, preparing it on first use. */
export function prepareIntelCollateral(collateral: IntelCollateral, rootCa: string | Buffer = INTEL_SGX_ROOT_CA_PEM): PreparedCollateral {
  const rootKey = typeof rootCa === 'string' ? rootCa : rootCa.toString('base64');
  let byRoot = preparedByCollateral.get(collateral);
  const cached = byRoot?.get(rootKey);
  if (cached !== undefined && sameContent(cached.source, collateral)) return cached;

  const prepared = prepare(collateral, certificateFromPemOrDer(rootCa, 'root CA'));
  if (byRoot === undefined) {
    byRoot = new Map();
    preparedByCollateral.set(collateral, byRoot);
  }
  byRoot.set(rootKey, prepared);
  return prepared;
}

function prepare(collateral: IntelCollateral, root: Certificate): PreparedCollateral {
  const verified = new VerifiedSignatures();
  // A copy, so that later changes to the caller's object (Buffers included) are seen as different content.
  const source: IntelCollateral = {
    ...collateral,
    rootCaCrl: Buffer.from(collateral.rootCaCrl),
    pckCrl: Buffer.from(collateral.pckCrl),
    tcbInfoSignature: Buffer.from(collateral.tcbInfoSignature),
    qeIdentitySignature: Buffer.from(collateral.qeIdentitySignature),
  };
  const tcbPath = tcbSigningPath(collateral.tcbInfoIssuerChain, root, verified, 'TCB Info issuer chain');
  const qePath = tcbSigningPath(collateral.qeIdentityIssuerChain, root, verified, 'QE identity issuer chain');
  const pckCrlPath = verifyChainSignatures(certificatesFromPem(collateral.pckCrlIssuerChain, 'PCK CRL issuer chain'), root, 'PCK CRL issuer chain', verified);
  checkShape(pckCrlPath, ['SGX PCK'], 'PCK CRL issuer chain');

  // The CRLs are parsed from the copies, so their DER stays as verified when the caller changes its buffers.
  const rootCrl = parseCrl(source.rootCaCrl);
  checkCrlIssuer(rootCrl, root, ROOT_CA_CRL, verified);
  for (const path of [tcbPath, qePath, pckCrlPath]) checkIntermediates(path, root, rootCrl);

  const pckCrl = parseCrl(source.pckCrl);
  if (!pckCrlPath[0]!.subject.equals(pckCrl.issuer)) {
    throw new CasError('COLLATERAL_INVALID', `the PCK CRL issuer chain is for "${pckCrlPath[0]!.subjectCn}", but the PCK CRL names "${pckCrl.issuerCn}"`);
  }

  // TCB Info and QE identity: signed by the TCB Signing certificate over the exact JSON text.
  const tcbInfo = parseSignedJson(collateral.tcbInfo, tcbInfoSchema, 'TCB Info');
  checkSignedJson(collateral.tcbInfo, collateral.tcbInfoSignature, tcbPath[0]!, 'TCB Info');
  const qeIdentity = parseSignedJson(collateral.qeIdentity, qeIdentitySchema, 'QE identity');
  checkSignedJson(collateral.qeIdentity, collateral.qeIdentitySignature, qePath[0]!, 'QE identity');

  return {
    source,
    root,
    rootCrl,
    pckCrl,
    tcbInfo,
    qeIdentity,
    paths: [
      { what: 'TCB Info issuer chain', path: tcbPath },
      { what: 'QE identity issuer chain', path: qePath },
      { what: 'PCK CRL issuer chain', path: pckCrlPath },
    ],
    verified,
  };
}

function sameContent(a: IntelCollateral, b: IntelCollateral): boolean {
  return (
    a.tcbInfo === b.tcbInfo &&
    a.qeIdentity === b.qeIdentity &&
    a.tcbInfoIssuerChain === b.tcbInfoIssuerChain &&
    a.qeIdentityIssuerChain === b.qeIdentityIssuerChain &&
    a.pckCrlIssuerChain === b.pckCrlIssuerChain &&
    a.tcbInfoSignature.equals(b.tcbInfoSignature) &&
    a.qeIdentitySignature.equals(b.qeIdentitySignature) &&
    a.rootCaCrl.equals(b.rootCaCrl) &&
    a.pckCrl.equals(b.pckCrl)
  );
}

/**
 * Checks that a verified path has one certificate per expected role below the root, each with the expected
 * common name, and that the leaf of a longer path (the PCK certificate) is not a CA. A PCK chain is PCK certificate, PCK Processor or Platform
 * CA, root; a TCB signing chain is TCB Signing certificate, root. Without this, any key that chains to the
 * root, such as a platform's PCK key, could sign TCB Info.
 */
export function checkShape(path: Certificate[], commonNames: string[], what: string): void {
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

/** Checks the certificates that the root issued against the root CA CRL. */
export function checkIntermediates(path: Certificate[], root: Certificate, rootCrl: Crl): void {
  for (let i = 0; i < path.length - 1; i++) {
    if (path[i + 1] === root) checkNotRevoked(path[i]!, rootCrl, ROOT_CA_CRL);
  }
}

/** Verifies a TCB Info or QE identity issuer chain, whose leaf must be the Intel SGX TCB Signing certificate. */
function tcbSigningPath(chainPem: string, root: Certificate, verified: VerifiedSignatures, what: string): Certificate[] {
  const path = verifyChainSignatures(certificatesFromPem(chainPem, what), root, what, verified);
  checkShape(path, ['SGX TCB Signing'], what);
  if (path[0]!.isCa) throw new CasError('CERT_CHAIN_INVALID', `${what}: the TCB Signing certificate "${path[0]!.subjectCn}" is a CA certificate`);
  return path;
}

function checkSignedJson(text: string, signature: Buffer, signer: Certificate, what: string): void {
  if (signature.length !== 64) throw new CasError('COLLATERAL_INVALID', `${what} signature has ${signature.length} bytes; expected 64 (r || s)`);
  if (!verifySignature('sha256', Buffer.from(text, 'utf8'), { key: signer.publicKey, dsaEncoding: 'ieee-p1363' }, signature)) {
    throw new CasError('COLLATERAL_INVALID', `${what} signature does not verify with the key of "${signer.subjectCn}" over the JSON text as served`);
  }
}
