import { CasError, type ErrorCode } from '../errors/cas-error.js';

/**
 * A minimal reader for DER (ITU-T X.690) as used by X.509 certificates and CRLs. It accepts only definite
 * lengths and single-byte tags, which is all that DER certificates use, and it never reads past the buffer.
 */
export interface Tlv {
  /** The identifier octet: class, constructed bit and tag number. */
  tag: number;
  /** Offset of the identifier octet in the buffer. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset one past the last content octet. */
  end: number;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific constructed tag `[n]`. */
export function contextTag(n: number): number {
  return 0xa0 | n;
}

export class DerReader {
  constructor(
    readonly buffer: Buffer,
    private readonly errorCode: ErrorCode = 'EVIDENCE_INVALID',
    private readonly what = 'DER structure',
  ) {}

  fail(message: string): never {
    throw new CasError(this.errorCode, `invalid ${this.what}: ${message}`);
  }

  /** Reads the TLV that starts at `offset` and ends no later than `limit`. */
  readAt(offset: number, limit = this.buffer.length): Tlv {
    const buf = this.buffer;
    if (offset + 2 > limit) this.fail(`truncated header at offset ${offset}`);
    const tag = buf[offset]!;
    if ((tag & 0x1f) === 0x1f) this.fail(`multi-byte tag at offset ${offset} is not supported`);
    let lengthByte = buf[offset + 1]!;
    let cursor = offset + 2;
    let length: number;
    if (lengthByte < 0x80) {
      length = lengthByte;
    } else {
      const count = lengthByte & 0x7f;
      if (count === 0) this.fail(`indefinite length at offset ${offset} is not DER`);
      if (count > 4) this.fail(`length of ${count} octets at offset ${offset} is too large`);
      if (cursor + count > limit) this.fail(`truncated length at offset ${offset}`);
      length = 0;
      for (let i = 0; i < count; i++) {
        lengthByte = buf[cursor++]!;
        length = length * 256 + lengthByte;
      }
    }
    const end = cursor + length;
    if (end > limit) this.fail(`element at offset ${offset} claims ${length} bytes but only ${limit - cursor} remain`);
    return { tag, start: offset, contentStart: cursor, end };
  }

  /** Reads the single top-level element and rejects trailing bytes. */
  root(): Tlv {
    const tlv = this.readAt(0);
    if (tlv.end !== this.buffer.length) this.fail(`${this.buffer.length - tlv.end} trailing bytes after the outer element`);
    return tlv;
  }

  /** Returns the children of a constructed element, in order. */
  children(parent: Tlv | undefined): Tlv[] {
    if (parent === undefined) this.fail('an element is missing');
    const result: Tlv[] = [];
    let offset = parent.contentStart;
    while (offset < parent.end) {
      const child = this.readAt(offset, parent.end);
      result.push(child);
      offset = child.end;
    }
    return result;
  }

  expect(tlv: Tlv | undefined, tag: number, name: string): Tlv {
    if (tlv === undefined) this.fail(`${name} is missing`);
    if (tlv.tag !== tag) this.fail(`${name} has tag 0x${tlv.tag.toString(16)}, expected 0x${tag.toString(16)}`);
    return tlv;
  }

  /** Returns the whole encoding (identifier, length and content) of an element. */
  raw(tlv: Tlv | undefined): Buffer {
    if (tlv === undefined) this.fail('an element is missing');
    return this.buffer.subarray(tlv.start, tlv.end);
  }

  content(tlv: Tlv | undefined): Buffer {
    if (tlv === undefined) this.fail('an element is missing');
    return this.buffer.subarray(tlv.contentStart, tlv.end);
  }

  oid(tlv: Tlv | undefined): string {
    this.expect(tlv, TAG.OID, 'object identifier');
    return decodeOid(this.content(tlv), (message) => this.fail(message));
  }

  /** Reads an INTEGER as a signed bigint (two's complement, as DER encodes it). */
  integer(tlv: Tlv | undefined): bigint {
    this.expect(tlv, TAG.INTEGER, 'integer');
    const bytes = this.content(tlv);
    if (bytes.length === 0) this.fail('empty integer');
    let value = BigInt('0x' + bytes.toString('hex'));
    if ((bytes[0]! & 0x80) !== 0) value -= 1n << BigInt(bytes.length * 8);
    return value;
  }

  /** Returns a BIT STRING's bytes. Unused bits are rejected, since signatures and keys never have them. */
  bitString(tlv: Tlv | undefined): Buffer {
    this.expect(tlv, TAG.BIT_STRING, 'bit string');
    const bytes = this.content(tlv);
    if (bytes.length === 0 || bytes[0] !== 0) this.fail('bit string with unused bits');
    return bytes.subarray(1);
  }

  time(tlv: Tlv | undefined): Date {
    if (tlv === undefined) this.fail('a time is missing');
    const text = this.content(tlv).toString('latin1');
    let match: RegExpExecArray | null;
    if (tlv.tag === TAG.UTC_TIME) {
      match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
      if (match === null) this.fail(`UTCTime ${JSON.stringify(text)} is not in the form YYMMDDHHMMSSZ`);
      const yy = Number(match[1]);
      // RFC 5280 4.1.2.5.1: two-digit years 50..99 are 19xx, 00..49 are 20xx.
      const year = yy >= 50 ? 1900 + yy : 2000 + yy;
      return new Date(Date.UTC(year, Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]), Number(match[6])));
    }
    if (tlv.tag === TAG.GENERALIZED_TIME) {
      match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
      if (match === null) this.fail(`GeneralizedTime ${JSON.stringify(text)} is not in the form YYYYMMDDHHMMSSZ`);
      return new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]), Number(match[6])));
    }
    return this.fail(`expected a time, found tag 0x${tlv.tag.toString(16)}`);
  }
}

export function decodeOid(bytes: Buffer, fail: (message: string) => never): string {
  if (bytes.length === 0) fail('empty object identifier');
  const arcs: bigint[] = [];
  let value = 0n;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    value = (value << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0n;
    } else if (i === bytes.length - 1) {
      fail('truncated object identifier');
    }
  }
  const first = arcs[0]!;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}
