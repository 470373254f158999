import { X509Certificate, createHash, createPublicKey, verify as verifySignature, constants, type KeyObject } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import { DerReader, TAG, contextTag, type Tlv } from './der.js';

/**
 * X.509 certificates and CRLs parsed from DER with our own reader, and verified with node:crypto.
 *
 * We parse certificates ourselves because the checks need the exact bytes of the issuer and subject names,
 * the signed TBS bytes and vendor extensions, and because AMD's VCEK carries a zero serial number, which
 * strict parsers reject. Signatures are checked with node:crypto (OpenSSL).
 */
export interface Certificate {
  der: Buffer;
  tbs: Buffer;
  serial: bigint;
  /** DER encoding of the issuer Name, compared byte for byte. */
  issuer: Buffer;
  subject: Buffer;
  /** The subject's common name, for messages. */
  subjectCn: string;
  issuerCn: string;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  signatureAlgorithm: SignatureAlgorithm;
  signature: Buffer;
  /** Extensions by OID: the content of extnValue. */
  extensions: Map<string, { critical: boolean; value: Buffer }>;
  isCa: boolean;
}

export interface Crl {
  der: Buffer;
  tbs: Buffer;
  issuer: Buffer;
  issuerCn: string;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  revokedSerials: Set<bigint>;
  signatureAlgorithm: SignatureAlgorithm;
  signature: Buffer;
}

export type SignatureAlgorithm =
  | { kind: 'ecdsa'; hash: 'sha256' | 'sha384' | 'sha512' }
  | { kind: 'rsa-pkcs1'; hash: 'sha256' | 'sha384' | 'sha512' }
  | { kind: 'rsa-pss'; hash: 'sha256' | 'sha384' | 'sha512'; saltLength: number };

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  ecdsaSha512: '1.2.840.10045.4.3.4',
  rsaSha256: '1.2.840.113549.1.1.11',
  rsaSha384: '1.2.840.113549.1.1.12',
  rsaSha512: '1.2.840.113549.1.1.13',
  rsaPss: '1.2.840.113549.1.1.10',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
} as const;

const HASH_BY_OID: Record<string, 'sha256' | 'sha384' | 'sha512'> = {
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};

/** Parses one DER certificate. Malformed input raises CERT_CHAIN_INVALID. */
export function parseCertificate(der: Buffer): Certificate {
  const reader = new DerReader(der, 'CERT_CHAIN_INVALID', 'certificate');
  const [tbsTlv, algTlv, sigTlv, ...rest] = reader.children(reader.expect(reader.root(), TAG.SEQUENCE, 'certificate'));
  if (rest.length > 0) reader.fail('extra elements after the signature');
  reader.expect(tbsTlv, TAG.SEQUENCE, 'tbsCertificate');
  const fields = reader.children(tbsTlv!);
  let index = 0;
  if (fields[0]?.tag === contextTag(0)) index++;
  const serial = reader.integer(reader.expect(fields[index++], TAG.INTEGER, 'serialNumber'));
  const innerAlg = reader.expect(fields[index++], TAG.SEQUENCE, 'signature');
  const issuerTlv = reader.expect(fields[index++], TAG.SEQUENCE, 'issuer');
  const validity = reader.children(reader.expect(fields[index++], TAG.SEQUENCE, 'validity'));
  const subjectTlv = reader.expect(fields[index++], TAG.SEQUENCE, 'subject');
  const spkiTlv = reader.expect(fields[index++], TAG.SEQUENCE, 'subjectPublicKeyInfo');

  const extensions = new Map<string, { critical: boolean; value: Buffer }>();
  for (const field of fields.slice(index)) {
    if (field.tag !== contextTag(3)) continue;
    const list = reader.expect(reader.children(field)[0], TAG.SEQUENCE, 'extensions');
    for (const ext of reader.children(list)) {
      const parts = reader.children(reader.expect(ext, TAG.SEQUENCE, 'extension'));
      const oid = reader.oid(parts[0]!);
      const critical = parts.length === 3 && reader.content(parts[1]!)[0] === 0xff;
      const value = reader.content(reader.expect(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue'));
      if (extensions.has(oid)) reader.fail(`extension ${oid} appears twice`);
      extensions.set(oid, { critical, value });
    }
  }

  const signatureAlgorithm = parseSignatureAlgorithm(reader, algTlv!);
  if (!reader.raw(innerAlg).equals(reader.raw(algTlv!))) reader.fail('the inner and outer signature algorithms differ');

  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: reader.raw(spkiTlv), format: 'der', type: 'spki' });
  } catch (error) {
    throw new CasError('CERT_CHAIN_INVALID', `invalid certificate: unsupported public key: ${(error as Error).message}`, { cause: error });
  }

  return {
    der,
    tbs: reader.raw(tbsTlv!),
    serial,
    issuer: reader.raw(issuerTlv),
    subject: reader.raw(subjectTlv),
    subjectCn: commonName(reader, subjectTlv),
    issuerCn: commonName(reader, issuerTlv),
    notBefore: reader.time(validity[0] ?? reader.fail('notBefore is missing')),
    notAfter: reader.time(validity[1] ?? reader.fail('notAfter is missing')),
    publicKey,
    signatureAlgorithm,
    signature: reader.bitString(sigTlv!),
    extensions,
    isCa: basicConstraintsCa(extensions),
  };
}

/** Parses one DER CRL (RFC 5280 section 5). Malformed input raises COLLATERAL_INVALID. */
export function parseCrl(der: Buffer): Crl {
  const reader = new DerReader(der, 'COLLATERAL_INVALID', 'CRL');
  const [tbsTlv, algTlv, sigTlv, ...rest] = reader.children(reader.expect(reader.root(), TAG.SEQUENCE, 'CRL'));
  if (rest.length > 0) reader.fail('extra elements after the signature');
  const fields = reader.children(reader.expect(tbsTlv, TAG.SEQUENCE, 'tbsCertList'));
  let index = 0;
  if (fields[0]?.tag === TAG.INTEGER) index++;
  const innerAlg = reader.expect(fields[index++], TAG.SEQUENCE, 'signature');
  const issuerTlv = reader.expect(fields[index++], TAG.SEQUENCE, 'issuer');
  const thisUpdate = reader.time(fields[index++] ?? reader.fail('thisUpdate is missing'));

  let nextUpdate: Date | undefined;
  const maybeNext = fields[index];
  if (maybeNext !== undefined && (maybeNext.tag === TAG.UTC_TIME || maybeNext.tag === TAG.GENERALIZED_TIME)) {
    nextUpdate = reader.time(maybeNext);
    index++;
  }

  const revokedSerials = new Set<bigint>();
  const maybeRevoked = fields[index];
  if (maybeRevoked !== undefined && maybeRevoked.tag === TAG.SEQUENCE) {
    for (const entry of reader.children(maybeRevoked)) {
      const [serialTlv] = reader.children(reader.expect(entry, TAG.SEQUENCE, 'revoked certificate'));
      revokedSerials.add(reader.integer(reader.expect(serialTlv, TAG.INTEGER, 'revoked serial')));
    }
  }

  const signatureAlgorithm = parseSignatureAlgorithm(reader, algTlv!);
  if (!reader.raw(innerAlg).equals(reader.raw(algTlv!))) reader.fail('the inner and outer signature algorithms differ');

  return {
    der,
    tbs: reader.raw(tbsTlv!),
    issuer: reader.raw(issuerTlv),
    issuerCn: commonName(reader, issuerTlv),
    thisUpdate,
    nextUpdate,
    revokedSerials,
    signatureAlgorithm,
    signature: reader.bitString(sigTlv!),
  };
}

function parseSignatureAlgorithm(reader: DerReader, tlv: Tlv): SignatureAlgorithm {
  const parts = reader.children(reader.expect(tlv, TAG.SEQUENCE, 'signatureAlgorithm'));
  const oid = reader.oid(parts[0]!);
  switch (oid) {
    case OID.ecdsaSha256:
      return { kind: 'ecdsa', hash: 'sha256' };
    case OID.ecdsaSha384:
      return { kind: 'ecdsa', hash: 'sha384' };
    case OID.ecdsaSha512:
      return { kind: 'ecdsa', hash: 'sha512' };
    case OID.rsaSha256:
      return { kind: 'rsa-pkcs1', hash: 'sha256' };
    case OID.rsaSha384:
      return { kind: 'rsa-pkcs1', hash: 'sha384' };
    case OID.rsaSha512:
      return { kind: 'rsa-pkcs1', hash: 'sha512' };
    case OID.rsaPss:
      return parsePssParameters(reader, parts[1]);
    default:
      return reader.fail(`unsupported signature algorithm ${oid}`);
  }
}

/** RSASSA-PSS-params (RFC 4055): the hash and salt length; MGF1 must use the same hash. */
function parsePssParameters(reader: DerReader, params: Tlv | undefined): SignatureAlgorithm {
  if (params === undefined) reader.fail('RSASSA-PSS without parameters (SHA-1 defaults are not accepted)');
  let hash: 'sha256' | 'sha384' | 'sha512' | undefined;
  let mgfHash: string | undefined;
  let saltLength = 20;
  for (const field of reader.children(reader.expect(params, TAG.SEQUENCE, 'RSASSA-PSS-params'))) {
    const inner = reader.children(field)[0]!;
    if (field.tag === contextTag(0)) {
      hash = HASH_BY_OID[reader.oid(reader.children(inner)[0]!)];
    } else if (field.tag === contextTag(1)) {
      const mgf = reader.children(inner);
      mgfHash = HASH_BY_OID[reader.oid(reader.children(mgf[1]!)[0]!)];
    } else if (field.tag === contextTag(2)) {
      saltLength = Number(reader.integer(inner));
    }
  }
  if (hash === undefined) reader.fail('RSASSA-PSS hash is missing or unsupported');
  if (mgfHash !== hash) reader.fail('RSASSA-PSS MGF1 hash differs from the message hash');
  return { kind: 'rsa-pss', hash, saltLength };
}

function commonName(reader: DerReader, name: Tlv): string {
  for (const rdn of reader.children(name)) {
    for (const attribute of reader.children(rdn)) {
      const [typeTlv, valueTlv] = reader.children(attribute);
      if (typeTlv !== undefined && valueTlv !== undefined && reader.oid(typeTlv) === OID.commonName) {
        return reader.content(valueTlv).toString('utf8');
      }
    }
  }
  return '';
}

function basicConstraintsCa(extensions: Map<string, { critical: boolean; value: Buffer }>): boolean {
  const ext = extensions.get(OID.basicConstraints);
  if (ext === undefined) return false;
  const reader = new DerReader(ext.value, 'CERT_CHAIN_INVALID', 'basicConstraints');
  const first = reader.children(reader.expect(reader.root(), TAG.SEQUENCE, 'basicConstraints'))[0];
  return first !== undefined && first.tag === TAG.BOOLEAN && reader.content(first)[0] === 0xff;
}

/** Verifies `signature` over `data` with `key` under `algorithm`. Returns false on any mismatch. */
export function verifyWith(algorithm: SignatureAlgorithm, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    if (algorithm.kind === 'rsa-pss') {
      return verifySignature(algorithm.hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: algorithm.saltLength }, signature);
    }
    return verifySignature(algorithm.hash, data, key, signature);
  } catch {
    return false;
  }
}

/**
 * Splits a PEM bundle into DER certificates, in order. Rejects input without any certificate, a block whose
 * body is not base64, and any text between or around the blocks other than whitespace.
 */
export function certificatesFromPem(pem: string, what: string): Certificate[] {
  const pattern = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  const blocks = [...pem.matchAll(pattern)];
  if (blocks.length === 0) throw new CasError('CERT_CHAIN_INVALID', `${what} contains no PEM certificate`);
  if (pem.replace(pattern, '').trim() !== '') throw new CasError('CERT_CHAIN_INVALID', `${what} contains text outside its PEM certificates`);
  return blocks.map((block, i) => {
    const body = block[1]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new CasError('CERT_CHAIN_INVALID', `${what}: PEM certificate ${i} is not valid base64`);
    return parseCertificate(Buffer.from(body, 'base64'));
  });
}

/**
 * Parses one trusted certificate given as PEM or DER. OpenSSL must be able to read it too, so a root that
 * only our lenient reader accepts is rejected.
 */
export function certificateFromPemOrDer(input: string | Buffer, what: string): Certificate {
  const isPem = typeof input === 'string' || input.subarray(0, 11).toString('latin1') === '-----BEGIN ';
  const cert = isPem ? certificatesFromPem(input.toString(), what)[0]! : parseCertificate(Buffer.from(input));
  try {
    new X509Certificate(cert.der);
  } catch (error) {
    throw new CasError('CERT_CHAIN_INVALID', `${what} is not a valid certificate: ${(error as Error).message}`, { cause: error });
  }
  return cert;
}

/**
 * Signature checks that have passed, keyed by SHA-256 of the exact signed object and of the issuer
 * certificate. Collateral is the same for every quote that one cache entry serves, so its signatures need
 * checking only once. Holds at most `limit` entries and starts over when full.
 */
export class VerifiedSignatures {
  private readonly passed = new Set<string>();

  constructor(private readonly limit = 4096) {}

  /** Returns true when `signed` verifies with `issuer`, running `verify` only the first time it passes. */
  check(signed: Certificate | Crl, issuer: Certificate, verify: () => boolean): boolean {
    const key = `${derDigest(signed)}:${derDigest(issuer)}`;
    if (this.passed.has(key)) return true;
    if (!verify()) return false;
    if (this.passed.size >= this.limit) this.passed.clear();
    this.passed.add(key);
    return true;
  }
}

// SHA-256 of each parsed object's DER, computed once per object, because the PCK chain of every quote is
// looked up in VerifiedSignatures. The memo is only right while the DER does not change. This module never
// changes a parsed certificate or CRL, and the objects that reach VerifiedSignatures come from
// certificatesFromPem, certificateFromPemOrDer and prepareIntelCollateral, which parse buffers that no
// caller holds.
const derDigests = new WeakMap<Certificate | Crl, string>();

function derDigest(parsed: Certificate | Crl): string {
  let digest = derDigests.get(parsed);
  if (digest === undefined) {
    digest = createHash('sha256').update(parsed.der).digest('hex');
    derDigests.set(parsed, digest);
  }
  return digest;
}

export interface ChainOptions {
  /** Trusted root certificate. */
  root: Certificate;
  /** The time at which every certificate must be valid. */
  at: Date;
  /** Names the chain in errors, e.g. "PCK certificate chain". */
  what: string;
}

/**
 * Verifies `chain` (leaf first, with or without the root) up to the trusted root. Names must link byte for
 * byte, every signature must verify with the issuer's key, every issuer must be a CA, and every
 * certificate, the root included, must be valid at `at`. Returns the chain with the trusted root at the end.
 */
export function verifyChain(chain: readonly Certificate[], options: ChainOptions): Certificate[] {
  const path = verifyChainSignatures(chain, options.root, options.what);
  checkChainValidity(path, options.at, options.what);
  return path;
}

/**
 * Checks everything about a chain that does not depend on the time: the links from `chain` (leaf first,
 * with or without the root) up to the trusted root, CA flags and signatures. Returns the chain with the
 * trusted root at the end. `checkChainValidity` then checks the validity periods.
 */
export function verifyChainSignatures(chain: readonly Certificate[], root: Certificate, what: string, verified?: VerifiedSignatures): Certificate[] {
  if (chain.length === 0) throw new CasError('CERT_CHAIN_INVALID', `${what} is empty`);
  const path = [...chain];
  if (path[path.length - 1]!.der.equals(root.der)) path.pop();
  if (path.length === 0) throw new CasError('CERT_CHAIN_INVALID', `${what} contains only the root certificate`);
  const last = path[path.length - 1]!;
  if (last.subject.equals(last.issuer)) {
    throw new CasError(
      'CERT_CHAIN_INVALID',
      `${what} ends in the self-signed "${last.subjectCn}" (SHA-256 ${createHash('sha256').update(last.der).digest('hex')}), which is not the trusted root; check the root CA`,
    );
  }
  for (const cert of path) {
    if (cert.der.equals(root.der)) throw new CasError('CERT_CHAIN_INVALID', `${what} contains the root certificate before its end`);
  }
  path.push(root);

  const check = (cert: Certificate, issuer: Certificate): boolean => {
    const verify = (): boolean => verifyWith(cert.signatureAlgorithm, cert.tbs, issuer.publicKey, cert.signature);
    return verified === undefined ? verify() : verified.check(cert, issuer, verify);
  };
  if (!root.subject.equals(root.issuer) || !check(root, root)) {
    throw new CasError('CERT_CHAIN_INVALID', `the trusted root "${root.subjectCn}" is not a valid self-signed certificate`);
  }
  for (let i = 0; i < path.length - 1; i++) {
    const cert = path[i]!;
    const issuer = path[i + 1]!;
    if (!cert.issuer.equals(issuer.subject)) {
      throw new CasError(
        'CERT_CHAIN_INVALID',
        `${what}: "${cert.subjectCn}" is issued by "${cert.issuerCn}", not by "${issuer.subjectCn}"; check that the trusted root CA is the right one`,
      );
    }
    if (!issuer.isCa) throw new CasError('CERT_CHAIN_INVALID', `${what}: issuer "${issuer.subjectCn}" is not a CA certificate`);
    if (!check(cert, issuer)) {
      throw new CasError('CERT_CHAIN_INVALID', `${what}: the signature of "${cert.subjectCn}" does not verify with the key of "${issuer.subjectCn}"`);
    }
  }
  return path;
}

/** Checks that every certificate of a verified path, the root included, is valid at `at`. */
export function checkChainValidity(path: Certificate[], at: Date, what: string): void {
  for (const cert of path) checkValidity(cert, at, what);
}

function checkValidity(cert: Certificate, at: Date, what: string): void {
  if (at < cert.notBefore || at > cert.notAfter) {
    throw new CasError(
      'CERT_CHAIN_INVALID',
      `${what}: certificate "${cert.subjectCn}" is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, not at ${at.toISOString()}`,
    );
  }
}

/**
 * Checks that `crl` was issued and signed by `issuer` and is current at `at`; only then may its entries be
 * trusted. `what` names the CRL in errors.
 */
export function checkCrl(crl: Crl, issuer: Certificate, at: Date, what: string): void {
  checkCrlIssuer(crl, issuer, what);
  checkCrlWindow(crl, at, what);
}

/** Checks the time-independent part of `checkCrl`: the CRL's issuer name and signature. */
export function checkCrlIssuer(crl: Crl, issuer: Certificate, what: string, verified?: VerifiedSignatures): void {
  if (!crl.issuer.equals(issuer.subject)) {
    throw new CasError('COLLATERAL_INVALID', `${what} is issued by "${crl.issuerCn}", not by "${issuer.subjectCn}"`);
  }
  const verify = (): boolean => verifyWith(crl.signatureAlgorithm, crl.tbs, issuer.publicKey, crl.signature);
  if (!(verified === undefined ? verify() : verified.check(crl, issuer, verify))) {
    throw new CasError('COLLATERAL_INVALID', `${what}: the signature does not verify with the key of "${issuer.subjectCn}"`);
  }
}

/** Checks that a CRL is current at `at`: thisUpdate <= at <= nextUpdate. */
export function checkCrlWindow(crl: Crl, at: Date, what: string): void {
  if (at < crl.thisUpdate) {
    throw new CasError('COLLATERAL_INVALID', `${what} is not valid before ${crl.thisUpdate.toISOString()} (verification time ${at.toISOString()})`);
  }
  if (crl.nextUpdate !== undefined && at > crl.nextUpdate) {
    throw new CasError('COLLATERAL_EXPIRED', `${what} expired at ${crl.nextUpdate.toISOString()} (nextUpdate); fetch fresh collateral`, {
      details: { item: what, expiredAt: crl.nextUpdate.toISOString() },
    });
  }
}

/** Checks that `cert` falls under a CRL already checked with `checkCrl`, and that the CRL does not list it. */
export function checkNotRevoked(cert: Certificate, crl: Crl, what: string): void {
  if (!cert.issuer.equals(crl.issuer)) {
    throw new CasError('COLLATERAL_INVALID', `${what} is issued by "${crl.issuerCn}" and cannot revoke "${cert.subjectCn}", which "${cert.issuerCn}" issued`);
  }
  if (crl.revokedSerials.has(cert.serial)) {
    throw new CasError('CERT_REVOKED', `certificate "${cert.subjectCn}" (serial ${cert.serial.toString(16)}) is revoked by ${what}`);
  }
}
