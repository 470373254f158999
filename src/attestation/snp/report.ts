import { CasError } from '../../errors/cas-error.js';

/**
 * Parser for the AMD SEV-SNP ATTESTATION_REPORT structure (SEV Secure Nested Paging Firmware ABI
 * Specification, table "ATTESTATION_REPORT Structure"), versions 2 and later. Integers are little-endian.
 * The signature covers bytes 0x000..0x29F; r and s follow at 0x2A0 and 0x2E8 as 72-byte little-endian
 * integers.
 */
export const SNP_REPORT_SIZE = 0x4a0;
export const SNP_SIGNED_LENGTH = 0x2a0;
const SIGNATURE_ALGORITHM_ECDSA_P384_SHA384 = 1;

export interface SnpReport {
  raw: Buffer;
  version: number;
  guestSvn: number;
  policy: bigint;
  familyId: Buffer;
  imageId: Buffer;
  vmpl: number;
  signatureAlgorithm: number;
  currentTcb: Buffer;
  platformInfo: bigint;
  /** Bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2..4 SIGNING_KEY (0 VCEK, 1 VLEK). */
  keyInfo: number;
  reportData: Buffer;
  measurement: Buffer;
  hostData: Buffer;
  idKeyDigest: Buffer;
  authorKeyDigest: Buffer;
  reportId: Buffer;
  reportIdMa: Buffer;
  /** REPORTED_TCB, 8 bytes as in the report. */
  reportedTcb: Buffer;
  chipId: Buffer;
  committedTcb: Buffer;
  launchTcb: Buffer;
  /** Signature r and s, big-endian, 48 bytes each (P-384). */
  signatureR: Buffer;
  signatureS: Buffer;
}

/** Guest policy bit 19: DEBUG, the hypervisor may debug the guest and read its memory. */
export const POLICY_DEBUG = 1n << 19n;

export function parseSnpReport(bytes: Buffer): SnpReport {
  if (bytes.length < SNP_REPORT_SIZE) {
    throw new CasError('EVIDENCE_INVALID', `SEV-SNP report is truncated: ${bytes.length} bytes, expected ${SNP_REPORT_SIZE}`);
  }
  const raw = bytes.subarray(0, SNP_REPORT_SIZE);
  const version = raw.readUInt32LE(0x00);
  if (version < 2) throw new CasError('EVIDENCE_INVALID', `SEV-SNP report version ${version} is not supported; versions 2 and later are`);
  const signatureAlgorithm = raw.readUInt32LE(0x34);
  if (signatureAlgorithm !== SIGNATURE_ALGORITHM_ECDSA_P384_SHA384) {
    throw new CasError('EVIDENCE_INVALID', `SEV-SNP report signature algorithm ${signatureAlgorithm} is not supported; only 1 (ECDSA P-384 with SHA-384) is`);
  }
  return {
    raw,
    version,
    guestSvn: raw.readUInt32LE(0x04),
    policy: raw.readBigUInt64LE(0x08),
    familyId: raw.subarray(0x10, 0x20),
    imageId: raw.subarray(0x20, 0x30),
    vmpl: raw.readUInt32LE(0x30),
    signatureAlgorithm,
    currentTcb: raw.subarray(0x38, 0x40),
    platformInfo: raw.readBigUInt64LE(0x40),
    keyInfo: raw.readUInt32LE(0x48),
    reportData: raw.subarray(0x50, 0x90),
    measurement: raw.subarray(0x90, 0xc0),
    hostData: raw.subarray(0xc0, 0xe0),
    idKeyDigest: raw.subarray(0xe0, 0x110),
    authorKeyDigest: raw.subarray(0x110, 0x140),
    reportId: raw.subarray(0x140, 0x160),
    reportIdMa: raw.subarray(0x160, 0x180),
    reportedTcb: raw.subarray(0x180, 0x188),
    chipId: raw.subarray(0x1a0, 0x1e0),
    committedTcb: raw.subarray(0x1e0, 0x1e8),
    launchTcb: raw.subarray(0x1f8, 0x200),
    signatureR: littleEndianComponent(raw.subarray(0x2a0, 0x2e8), 'r'),
    signatureS: littleEndianComponent(raw.subarray(0x2e8, 0x330), 's'),
  };
}

/** Converts a 72-byte little-endian signature component to 48 big-endian bytes; the top 24 bytes must be zero. */
function littleEndianComponent(bytes: Buffer, name: string): Buffer {
  if (bytes.subarray(48).some((byte) => byte !== 0)) {
    throw new CasError('EVIDENCE_INVALID', `SEV-SNP report signature component ${name} exceeds 384 bits`);
  }
  return Buffer.from(bytes.subarray(0, 48)).reverse();
}

/**
 * The TCB version fields; Turin adds FMC and moves the others.
 * NOTE: the Turin byte layout follows the SEV-SNP ABI's TCB_VERSION for Turin and is untested, because
 * only a Milan sample report is available.
 */
export interface SnpTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

export function decodeTcb(tcb: Buffer, product: string): SnpTcb {
  if (product.startsWith('Turin')) {
    return { fmc: tcb[0]!, bootloader: tcb[1]!, tee: tcb[2]!, snp: tcb[3]!, microcode: tcb[7]! };
  }
  return { bootloader: tcb[0]!, tee: tcb[1]!, snp: tcb[6]!, microcode: tcb[7]! };
}
