import { CasError } from '../../errors/cas-error.js';

/**
 * Parser for Intel DCAP ECDSA quotes: SGX quote v3, TDX quote v4 and quote v5 (SGX, TD 1.0 and TD 1.5
 * bodies), as laid out in the Intel SGX ECDSA Quote Library API and the Intel TDX DCAP Quoting Library API
 * (appendix "Quote Format"). All integers are little-endian.
 *
 * Layout:
 *   header (48)  | body (v3/v4: fixed; v5: type u16, size u32, body) | signature data size u32 | signature data
 * The quote signature covers header || body (for v5 also the type and size fields).
 */
export const HEADER_SIZE = 48;
export const SGX_REPORT_SIZE = 384;
export const TD10_REPORT_SIZE = 584;
export const TD15_REPORT_SIZE = 648;
export const TEE_TYPE_SGX = 0x00000000;
export const TEE_TYPE_TDX = 0x00000081;
const ATTESTATION_KEY_TYPE_ECDSA_P256 = 2;
const CERT_DATA_PCK_CHAIN = 5;
const CERT_DATA_QE_REPORT = 6;

export interface QuoteHeader {
  version: number;
  attestationKeyType: number;
  teeType: number;
  qeSvn: number;
  pceSvn: number;
  qeVendorId: Buffer;
  userData: Buffer;
}

/** SGX REPORTBODY (384 bytes), used both for the enclave and for the QE report. */
export interface SgxReportBody {
  raw: Buffer;
  cpuSvn: Buffer;
  miscSelect: Buffer;
  attributes: Buffer;
  mrEnclave: Buffer;
  mrSigner: Buffer;
  configId: Buffer;
  isvProdId: number;
  isvSvn: number;
  configSvn: number;
  isvFamilyId: Buffer;
  isvExtProdId: Buffer;
  reportData: Buffer;
}

/** TDX TD report body: TD 1.0 (584 bytes) or TD 1.5 (648 bytes, adds TEE_TCB_SVN2 and MRSERVICETD). */
export interface TdReportBody {
  raw: Buffer;
  teeTcbSvn: Buffer;
  mrSeam: Buffer;
  mrSignerSeam: Buffer;
  seamAttributes: Buffer;
  tdAttributes: Buffer;
  xfam: Buffer;
  mrTd: Buffer;
  mrConfigId: Buffer;
  mrOwner: Buffer;
  mrOwnerConfig: Buffer;
  rtmr: [Buffer, Buffer, Buffer, Buffer];
  reportData: Buffer;
  teeTcbSvn2?: Buffer;
  mrServiceTd?: Buffer;
}

export interface DcapQuote {
  header: QuoteHeader;
  body: { kind: 'sgx'; report: SgxReportBody } | { kind: 'td10' | 'td15'; report: TdReportBody };
  /** The bytes that the attestation key signs: header and body. */
  signedBytes: Buffer;
  /** ECDSA P-256 signature, r || s. */
  signature: Buffer;
  /** Attestation public key, x || y (64 bytes). */
  attestationKey: Buffer;
  qeReport: SgxReportBody;
  /** ECDSA P-256 signature of the QE report by the PCK key, r || s. */
  qeReportSignature: Buffer;
  qeAuthData: Buffer;
  /** The PEM PCK certificate chain (certification data type 5). */
  pckChainPem: string;
  /** Length of the quote; bytes after it (padding) are ignored. */
  length: number;
}

class Cursor {
  constructor(
    readonly buffer: Buffer,
    public offset: number,
  ) {}

  take(length: number, field: string): Buffer {
    if (this.offset + length > this.buffer.length) {
      throw new CasError(
        'EVIDENCE_INVALID',
        `quote is truncated: ${field} needs ${length} bytes at offset ${this.offset}, but the quote has ${this.buffer.length} bytes`,
      );
    }
    const slice = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }

  u16(field: string): number {
    return this.take(2, field).readUInt16LE(0);
  }

  u32(field: string): number {
    return this.take(4, field).readUInt32LE(0);
  }
}

/** Parses a quote; trailing bytes after the signature data are allowed and reported through `length`. */
export function parseQuote(bytes: Buffer): DcapQuote {
  const cursor = new Cursor(bytes, 0);
  const header = parseHeader(cursor);
  const body = parseBody(cursor, header);
  const signedBytes = bytes.subarray(0, cursor.offset);

  const signatureDataSize = cursor.u32('signature data size');
  const signatureEnd = cursor.offset + signatureDataSize;
  if (signatureEnd > bytes.length) {
    throw new CasError('EVIDENCE_INVALID', `quote is truncated: signature data of ${signatureDataSize} bytes ends at ${signatureEnd}, but the quote has ${bytes.length} bytes`);
  }
  const signatureData = new Cursor(bytes.subarray(0, signatureEnd), cursor.offset);
  const signature = signatureData.take(64, 'quote signature');
  const attestationKey = signatureData.take(64, 'attestation key');

  let qeSection: Cursor;
  if (header.version === 3) {
    qeSection = signatureData;
  } else {
    const type = signatureData.u16('certification data type');
    const size = signatureData.u32('certification data size');
    if (type !== CERT_DATA_QE_REPORT) {
      throw new CasError('EVIDENCE_INVALID', `quote v${header.version} certification data has type ${type}; expected ${CERT_DATA_QE_REPORT} (QE report certification data)`);
    }
    const inner = signatureData.take(size, 'QE report certification data');
    qeSection = new Cursor(inner, 0);
    if (signatureData.offset !== signatureEnd) throw new CasError('EVIDENCE_INVALID', 'quote signature data has bytes after the certification data');
  }

  const qeReport = parseSgxReportBody(qeSection.take(SGX_REPORT_SIZE, 'QE report'));
  const qeReportSignature = qeSection.take(64, 'QE report signature');
  const qeAuthData = qeSection.take(qeSection.u16('QE authentication data size'), 'QE authentication data');
  const certType = qeSection.u16('PCK certification data type');
  const certSize = qeSection.u32('PCK certification data size');
  if (certType !== CERT_DATA_PCK_CHAIN) {
    throw new CasError('EVIDENCE_INVALID', `quote certification data type ${certType} is not supported; only type ${CERT_DATA_PCK_CHAIN} (PEM PCK certificate chain) is`);
  }
  const pckChain = qeSection.take(certSize, 'PCK certificate chain');
  if (qeSection.offset !== qeSection.buffer.length) {
    throw new CasError('EVIDENCE_INVALID', 'quote certification data has bytes after the PCK certificate chain');
  }

  return {
    header,
    body,
    signedBytes,
    signature,
    attestationKey,
    qeReport,
    qeReportSignature,
    qeAuthData,
    pckChainPem: withoutTrailingNuls(pckChain).toString('utf8'),
    length: signatureEnd,
  };
}

// Quote generators pad the PEM chain with NUL bytes. Trimming the bytes is cheaper than a regular
// expression over the decoded text, and UTF-8 never encodes another character with a zero byte.
function withoutTrailingNuls(bytes: Buffer): Buffer {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return bytes.subarray(0, end);
}

function parseHeader(cursor: Cursor): QuoteHeader {
  const header: QuoteHeader = {
    version: cursor.u16('version'),
    attestationKeyType: cursor.u16('attestation key type'),
    teeType: cursor.u32('TEE type'),
    qeSvn: cursor.u16('QE SVN'),
    pceSvn: cursor.u16('PCE SVN'),
    qeVendorId: cursor.take(16, 'QE vendor id'),
    userData: cursor.take(20, 'user data'),
  };
  if (![3, 4, 5].includes(header.version)) {
    throw new CasError('EVIDENCE_INVALID', `quote version ${header.version} is not supported; versions 3, 4 and 5 are`);
  }
  if (header.attestationKeyType !== ATTESTATION_KEY_TYPE_ECDSA_P256) {
    throw new CasError('EVIDENCE_INVALID', `quote attestation key type ${header.attestationKeyType} is not supported; only 2 (ECDSA P-256) is`);
  }
  if (header.teeType !== TEE_TYPE_SGX && header.teeType !== TEE_TYPE_TDX) {
    throw new CasError('EVIDENCE_INVALID', `quote TEE type 0x${header.teeType.toString(16)} is neither SGX (0x0) nor TDX (0x81)`);
  }
  if (header.version === 3 && header.teeType !== TEE_TYPE_SGX) {
    throw new CasError('EVIDENCE_INVALID', 'quote v3 must carry an SGX report');
  }
  return header;
}

function parseBody(cursor: Cursor, header: QuoteHeader): DcapQuote['body'] {
  if (header.version === 3 || header.version === 4) {
    if (header.teeType === TEE_TYPE_SGX) return { kind: 'sgx', report: parseSgxReportBody(cursor.take(SGX_REPORT_SIZE, 'SGX report body')) };
    return { kind: 'td10', report: parseTdReportBody(cursor.take(TD10_REPORT_SIZE, 'TD report body')) };
  }
  const bodyType = cursor.u16('body type');
  const bodySize = cursor.u32('body size');
  const expected: Record<number, [number, 'sgx' | 'td10' | 'td15']> = {
    1: [SGX_REPORT_SIZE, 'sgx'],
    2: [TD10_REPORT_SIZE, 'td10'],
    3: [TD15_REPORT_SIZE, 'td15'],
  };
  const entry = expected[bodyType];
  if (entry === undefined) throw new CasError('EVIDENCE_INVALID', `quote v5 body type ${bodyType} is not supported; types 1 (SGX), 2 (TD 1.0) and 3 (TD 1.5) are`);
  if (bodySize !== entry[0]) throw new CasError('EVIDENCE_INVALID', `quote v5 body type ${bodyType} has size ${bodySize}; expected ${entry[0]}`);
  if ((entry[1] === 'sgx') !== (header.teeType === TEE_TYPE_SGX)) {
    throw new CasError('EVIDENCE_INVALID', `quote v5 body type ${bodyType} does not match TEE type 0x${header.teeType.toString(16)}`);
  }
  const raw = cursor.take(bodySize, 'report body');
  if (entry[1] === 'sgx') return { kind: 'sgx', report: parseSgxReportBody(raw) };
  return { kind: entry[1], report: parseTdReportBody(raw) };
}

export function parseSgxReportBody(raw: Buffer): SgxReportBody {
  return {
    raw,
    cpuSvn: raw.subarray(0, 16),
    miscSelect: raw.subarray(16, 20),
    isvExtProdId: raw.subarray(32, 48),
    attributes: raw.subarray(48, 64),
    mrEnclave: raw.subarray(64, 96),
    mrSigner: raw.subarray(128, 160),
    configId: raw.subarray(192, 256),
    isvProdId: raw.readUInt16LE(256),
    isvSvn: raw.readUInt16LE(258),
    configSvn: raw.readUInt16LE(260),
    isvFamilyId: raw.subarray(304, 320),
    reportData: raw.subarray(320, 384),
  };
}

function parseTdReportBody(raw: Buffer): TdReportBody {
  const body: TdReportBody = {
    raw,
    teeTcbSvn: raw.subarray(0, 16),
    mrSeam: raw.subarray(16, 64),
    mrSignerSeam: raw.subarray(64, 112),
    seamAttributes: raw.subarray(112, 120),
    tdAttributes: raw.subarray(120, 128),
    xfam: raw.subarray(128, 136),
    mrTd: raw.subarray(136, 184),
    mrConfigId: raw.subarray(184, 232),
    mrOwner: raw.subarray(232, 280),
    mrOwnerConfig: raw.subarray(280, 328),
    rtmr: [raw.subarray(328, 376), raw.subarray(376, 424), raw.subarray(424, 472), raw.subarray(472, 520)],
    reportData: raw.subarray(520, 584),
  };
  if (raw.length === TD15_REPORT_SIZE) {
    body.teeTcbSvn2 = raw.subarray(584, 600);
    body.mrServiceTd = raw.subarray(600, 648);
  }
  return body;
}
