import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { IntelCollateral } from './collateral.js';

/**
 * Test support: a complete Intel-like DCAP PKI with our own keys (root CA, PCK Processor CA, PCK
 * certificate with the SGX extension, TCB Signing certificate, both CRLs, signed TCB Info and QE identity)
 * and SGX v3 quotes signed through it. Intel's keys are not ours, so negative cases that need re-signed
 * collateral (revoked PCK, QE identity mismatch, forged CRLs) are built here.
 */
const subtle = webcrypto.subtle;
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const NAME_SUFFIX = 'O=CAS Test Intel Corporation, L=Santa Clara, ST=CA, C=US';

export const FIXTURE_TIME = new Date('2025-07-01T00:00:00Z');
export const FMSPC = '00906ED50000';
export const QE_MRSIGNER = '8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff';

type KeyPair = webcrypto.CryptoKeyPair;

export interface Pki {
  root: { keys: KeyPair; cert: x509.X509Certificate };
  pckCa: { keys: KeyPair; cert: x509.X509Certificate };
  tcbSigner: { keys: KeyPair; cert: x509.X509Certificate };
  pck: { keys: KeyPair; cert: x509.X509Certificate };
}

export interface PkiOptions {
  /** SGX TCB component SVNs in the PCK certificate. */
  sgxComponents?: number[];
  pceSvn?: number;
  fmspc?: string;
}

async function keyPair(): Promise<KeyPair> {
  return (await subtle.generateKey(EC, true, ['sign', 'verify'])) as KeyPair;
}

const caExtensions = (): x509.Extension[] => [new x509.BasicConstraintsExtension(true, 1, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)];

/** Creates a CA certificate named `cn`, signed by `issuer` (self-signed when absent). */
export async function createCa(cn: string, issuer?: { keys: KeyPair; cert: x509.X509Certificate }): Promise<{ keys: KeyPair; cert: x509.X509Certificate }> {
  const keys = await keyPair();
  const common = {
    serialNumber: randomSerial(),
    notBefore: new Date('2018-05-21T10:45:10Z'),
    notAfter: new Date('2049-12-31T23:59:59Z'),
    signingAlgorithm: SIGN,
    extensions: caExtensions(),
  };
  const cert =
    issuer === undefined
      ? await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: `CN=${cn}, ${NAME_SUFFIX}`, keys })
      : await x509.X509CertificateGenerator.create({ ...common, subject: `CN=${cn}, ${NAME_SUFFIX}`, issuer: issuer.cert.subjectName, publicKey: keys.publicKey, signingKey: issuer.keys.privateKey });
  return { keys, cert };
}

export async function createPki(options: PkiOptions = {}): Promise<Pki> {
  const root = await createCa('Intel SGX Root CA');
  const pckCa = await createCa('Intel SGX PCK Processor CA', root);
  const tcbKeys = await keyPair();
  const tcbSigner = {
    keys: tcbKeys,
    cert: await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=Intel SGX TCB Signing, ${NAME_SUFFIX}`,
      issuer: root.cert.subjectName,
      notBefore: new Date('2025-05-06T09:25:00Z'),
      notAfter: new Date('2032-05-06T09:25:00Z'),
      publicKey: tcbKeys.publicKey,
      signingKey: root.keys.privateKey,
      signingAlgorithm: SIGN,
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
    }),
  };
  const pckKeys = await keyPair();
  const pck = {
    keys: pckKeys,
    cert: await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=Intel SGX PCK Certificate, ${NAME_SUFFIX}`,
      issuer: pckCa.cert.subjectName,
      notBefore: new Date('2025-01-01T00:00:00Z'),
      notAfter: new Date('2032-01-01T00:00:00Z'),
      publicKey: pckKeys.publicKey,
      signingKey: pckCa.keys.privateKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.Extension('1.2.840.113741.1.13.1', false, sgxExtension(options)),
      ],
    }),
  };
  return { root, pckCa, tcbSigner, pck };
}

function randomSerial(): string {
  // A positive serial: the top bit of the first byte is clear.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f | 0x01;
  return Buffer.from(bytes).toString('hex');
}

/** Creates a CRL issued by `issuer` that lists `revokedSerials` (hex). */
export async function createCrl(
  issuer: { keys: KeyPair; cert: x509.X509Certificate },
  revokedSerials: string[] = [],
  options: { thisUpdate?: Date; nextUpdate?: Date; issuerName?: string; signingKey?: webcrypto.CryptoKey } = {},
): Promise<Buffer> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: options.issuerName ?? issuer.cert.subjectName.toString(),
    thisUpdate: options.thisUpdate ?? new Date('2025-06-19T00:00:00Z'),
    nextUpdate: options.nextUpdate ?? new Date('2025-07-19T00:00:00Z'),
    signingAlgorithm: SIGN,
    signingKey: options.signingKey ?? issuer.keys.privateKey,
    entries: revokedSerials.map((serialNumber) => ({ serialNumber, revocationDate: new Date('2025-06-01T00:00:00Z') })),
  });
  return Buffer.from(crl.rawData);
}

export async function signP1363(key: webcrypto.CryptoKey, data: Buffer): Promise<Buffer> {
  return Buffer.from(await subtle.sign(SIGN, key, data));
}

export interface TcbLevelSpec {
  sgx: number[];
  pcesvn: number;
  status: string;
  advisoryIDs?: string[];
}

export function tcbInfoText(levels: TcbLevelSpec[], options: { fmspc?: string; nextUpdate?: string } = {}): string {
  return JSON.stringify({
    id: 'SGX',
    version: 3,
    issueDate: '2025-06-19T00:00:00Z',
    nextUpdate: options.nextUpdate ?? '2025-07-19T00:00:00Z',
    fmspc: options.fmspc ?? FMSPC,
    pceId: '0000',
    tcbType: 0,
    tcbEvaluationDataNumber: 17,
    tcbLevels: levels.map((level) => ({
      tcb: { sgxtcbcomponents: level.sgx.map((svn) => ({ svn })), pcesvn: level.pcesvn },
      tcbDate: '2024-11-13T00:00:00Z',
      tcbStatus: level.status,
      ...(level.advisoryIDs === undefined ? {} : { advisoryIDs: level.advisoryIDs }),
    })),
  });
}

export function qeIdentityText(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    id: 'QE',
    version: 2,
    issueDate: '2025-06-19T00:00:00Z',
    nextUpdate: '2025-07-19T00:00:00Z',
    tcbEvaluationDataNumber: 17,
    miscselect: '00000000',
    miscselectMask: 'FFFFFFFF',
    attributes: '11000000000000000000000000000000',
    attributesMask: 'FBFFFFFFFFFFFFFF0000000000000000',
    mrsigner: QE_MRSIGNER.toUpperCase(),
    isvprodid: 1,
    tcbLevels: [
      { tcb: { isvsvn: 8 }, tcbDate: '2024-03-13T00:00:00Z', tcbStatus: 'UpToDate' },
      { tcb: { isvsvn: 6 }, tcbDate: '2021-11-10T00:00:00Z', tcbStatus: 'OutOfDate', advisoryIDs: ['INTEL-SA-00615'] },
      { tcb: { isvsvn: 0 }, tcbDate: '2018-08-15T00:00:00Z', tcbStatus: 'Revoked', advisoryIDs: ['INTEL-SA-00202'] },
    ],
    ...overrides,
  });
}

export const UP_TO_DATE_LEVELS: TcbLevelSpec[] = [
  { sgx: [4, 4, 3, 3, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], pcesvn: 13, status: 'UpToDate' },
  { sgx: [2, 2, 2, 2, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], pcesvn: 10, status: 'OutOfDate', advisoryIDs: ['INTEL-SA-00334'] },
];

export const PLATFORM_COMPONENTS = [4, 4, 3, 3, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

export interface QuoteSpec {
  /** Quote format: 3 (default), 4 (SGX body, QE data wrapped as certification data type 6) or 5 (typed body). */
  version?: 3 | 4 | 5;
  mrenclave?: Buffer;
  mrsigner?: Buffer;
  attributes?: Buffer;
  isvProdId?: number;
  isvSvn?: number;
  reportData?: Buffer;
  qeIsvSvn?: number;
  qeMrsigner?: Buffer;
  qeIsvProdId?: number;
  qeAttributes?: Buffer;
}

/** Builds an SGX quote signed by a fresh attestation key, whose QE report the PCK key signs. */
export async function buildSgxQuote(pki: Pki, spec: QuoteSpec = {}): Promise<Buffer> {
  const version = spec.version ?? 3;
  const header = Buffer.alloc(48);
  header.writeUInt16LE(version, 0);
  header.writeUInt16LE(2, 2);
  header.writeUInt32LE(0, 4);
  header.writeUInt16LE(8, 8);
  header.writeUInt16LE(13, 10);
  Buffer.from('939a7233f79c4ca9940a0db3957f0607', 'hex').copy(header, 12);

  const body = Buffer.alloc(384);
  (spec.attributes ?? Buffer.from('05000000000000000700000000000000', 'hex')).copy(body, 48);
  (spec.mrenclave ?? Buffer.alloc(32, 0xaa)).copy(body, 64);
  (spec.mrsigner ?? Buffer.alloc(32, 0xbb)).copy(body, 128);
  body.writeUInt16LE(spec.isvProdId ?? 7, 256);
  body.writeUInt16LE(spec.isvSvn ?? 3, 258);
  (spec.reportData ?? Buffer.alloc(64, 0x5a)).copy(body, 320);

  const attestationKeys = await keyPair();
  const jwk = await subtle.exportKey('jwk', attestationKeys.publicKey);
  const attestationKey = Buffer.concat([Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const qeAuthData = Buffer.alloc(32, 0x11);

  const qeReport = Buffer.alloc(384);
  (spec.qeAttributes ?? Buffer.from('11000000000000000700000000000000', 'hex')).copy(qeReport, 48);
  (spec.qeMrsigner ?? Buffer.from(QE_MRSIGNER, 'hex')).copy(qeReport, 128);
  qeReport.writeUInt16LE(spec.qeIsvProdId ?? 1, 256);
  qeReport.writeUInt16LE(spec.qeIsvSvn ?? 8, 258);
  createHash('sha256').update(attestationKey).update(qeAuthData).digest().copy(qeReport, 320);

  const chain = Buffer.from([pki.pck.cert, pki.pckCa.cert, pki.root.cert].map((cert) => cert.toString('pem')).join('\n') + '\n');
  let signedBytes = Buffer.concat([header, body]);
  if (version === 5) {
    const bodyHeader = Buffer.alloc(6);
    bodyHeader.writeUInt16LE(1, 0);
    bodyHeader.writeUInt32LE(body.length, 2);
    signedBytes = Buffer.concat([header, bodyHeader, body]);
  }
  const authSize = Buffer.alloc(2);
  authSize.writeUInt16LE(qeAuthData.length);
  const qeSection = Buffer.concat([
    qeReport,
    await signP1363(pki.pck.keys.privateKey, qeReport),
    authSize,
    qeAuthData,
    certificationData(5, chain),
  ]);
  const signatureData = Buffer.concat([
    await signP1363(attestationKeys.privateKey, signedBytes),
    attestationKey,
    version === 3 ? qeSection : certificationData(6, qeSection),
  ]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(signatureData.length);
  return Buffer.concat([signedBytes, size, signatureData]);
}

export interface CollateralSpec {
  tcbInfo?: string;
  qeIdentity?: string;
  pckCrl?: Buffer;
  rootCaCrl?: Buffer;
}

/** Builds collateral for `pki`: CRLs that revoke nothing and TCB Info and QE identity signed by the TCB signer. */
export async function buildCollateral(pki: Pki, spec: CollateralSpec = {}): Promise<IntelCollateral> {
  const tcbInfo = spec.tcbInfo ?? tcbInfoText(UP_TO_DATE_LEVELS);
  const qeIdentity = spec.qeIdentity ?? qeIdentityText();
  const tcbChain = pki.tcbSigner.cert.toString('pem') + '\n' + pki.root.cert.toString('pem') + '\n';
  return {
    pckCrlIssuerChain: pki.pckCa.cert.toString('pem') + '\n' + pki.root.cert.toString('pem') + '\n',
    rootCaCrl: spec.rootCaCrl ?? (await createCrl(pki.root)),
    pckCrl: spec.pckCrl ?? (await createCrl(pki.pckCa)),
    tcbInfoIssuerChain: tcbChain,
    tcbInfo,
    tcbInfoSignature: await signP1363(pki.tcbSigner.keys.privateKey, Buffer.from(tcbInfo)),
    qeIdentityIssuerChain: tcbChain,
    qeIdentity,
    qeIdentitySignature: await signP1363(pki.tcbSigner.keys.privateKey, Buffer.from(qeIdentity)),
  };
}

function certificationData(type: number, data: Buffer): Buffer {
  const header = Buffer.alloc(6);
  header.writeUInt16LE(type, 0);
  header.writeUInt32LE(data.length, 2);
  return Buffer.concat([header, data]);
}

// A minimal DER encoder for the SGX extension of the PCK certificate.
function der(tag: number, content: Buffer): Buffer {
  const length = content.length;
  let lengthBytes: Buffer;
  if (length < 0x80) lengthBytes = Buffer.from([length]);
  else if (length < 0x100) lengthBytes = Buffer.from([0x81, length]);
  else lengthBytes = Buffer.from([0x82, length >> 8, length & 0xff]);
  return Buffer.concat([Buffer.from([tag]), lengthBytes, content]);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const bytes = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk = [arc & 0x7f];
    for (let rest = arc >> 7; rest > 0; rest >>= 7) chunk.unshift((rest & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}

function integer(value: number): Buffer {
  const bytes = value === 0 ? [0] : [];
  for (let rest = value; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return der(0x02, Buffer.from(bytes));
}

function sgxExtension(options: PkiOptions): Buffer {
  const base = '1.2.840.113741.1.13.1';
  const components = options.sgxComponents ?? PLATFORM_COMPONENTS;
  const tcbEntries = components.map((svn, i) => der(0x30, Buffer.concat([oid(`${base}.2.${i + 1}`), integer(svn)])));
  tcbEntries.push(der(0x30, Buffer.concat([oid(`${base}.2.17`), integer(options.pceSvn ?? 13)])));
  tcbEntries.push(der(0x30, Buffer.concat([oid(`${base}.2.18`), der(0x04, Buffer.from(components))])));
  const entries = [
    der(0x30, Buffer.concat([oid(`${base}.1`), der(0x04, Buffer.alloc(16, 0x42))])),
    der(0x30, Buffer.concat([oid(`${base}.2`), der(0x30, Buffer.concat(tcbEntries))])),
    der(0x30, Buffer.concat([oid(`${base}.3`), der(0x04, Buffer.from('0000', 'hex'))])),
    der(0x30, Buffer.concat([oid(`${base}.4`), der(0x04, Buffer.from(options.fmspc ?? FMSPC, 'hex'))])),
    der(0x30, Buffer.concat([oid(`${base}.5`), der(0x0a, Buffer.from([0]))])),
  ];
  return der(0x30, Buffer.concat(entries));
}
