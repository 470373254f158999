import { CasError } from '../errors/cas-error.js';

/**
 * Decodes evidence as stored in files: raw bytes, or hex text with or without a 0x prefix (whitespace
 * ignored). Text counts as hex only when every byte is a hex digit or whitespace, which a binary quote's
 * header (version 3..5 as a little-endian u16) never is.
 */
export function decodeEvidenceBytes(bytes: Buffer): Buffer {
  const text = bytes.toString('latin1').trim();
  const body = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (body.length > 0 && /^[0-9a-fA-F\s]+$/.test(body)) {
    const compact = body.replace(/\s+/g, '');
    if (compact.length % 2 !== 0) throw new CasError('EVIDENCE_INVALID', `hex evidence has an odd number of digits (${compact.length})`);
    return Buffer.from(compact, 'hex');
  }
  return bytes;
}

/**
 * Tells Intel DCAP quotes from SEV-SNP reports by their first bytes: a quote starts with version 3..5 and
 * attestation key type 2 (u16 each); an SNP report starts with version >= 2 as a u32 and carries signature
 * algorithm 1 at 0x34.
 */
export function evidenceKind(bytes: Buffer): 'intel' | 'snp' {
  if (bytes.length >= 4) {
    const version = bytes.readUInt16LE(0);
    if (version >= 3 && version <= 5 && bytes.readUInt16LE(2) === 2) return 'intel';
  }
  if (bytes.length >= 0x38 && bytes.readUInt32LE(0) >= 2 && bytes.readUInt32LE(0x34) === 1) return 'snp';
  throw new CasError('EVIDENCE_INVALID', 'evidence is neither an Intel DCAP quote (v3, v4, v5) nor an SEV-SNP attestation report (v2 or later)');
}
