import { CasError } from '../../errors/cas-error.js';
import { DerReader, TAG } from '../der.js';
import type { Certificate } from '../x509.js';

/**
 * The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1), as specified in the Intel SGX PCK
 * Certificate and Certificate Revocation List Profile: the platform's TCB (16 SGX component SVNs and the PCE
 * SVN), its PCE id and its FMSPC.
 */
export interface PckExtensions {
  sgxTcbComponents: number[];
  pceSvn: number;
  cpuSvn: Buffer;
  pceId: Buffer;
  fmspc: Buffer;
}

const SGX_EXTENSIONS = '1.2.840.113741.1.13.1';
const TCB = `${SGX_EXTENSIONS}.2`;
const PCE_ID = `${SGX_EXTENSIONS}.3`;
const FMSPC = `${SGX_EXTENSIONS}.4`;

// Parsed extensions per certificate object, since verifying many quotes from one platform reuses its PCK.
const parsed = new WeakMap<Certificate, PckExtensions>();

export function parsePckExtensions(pck: Certificate): PckExtensions {
  let extensions = parsed.get(pck);
  if (extensions === undefined) {
    extensions = parseExtension(pck);
    parsed.set(pck, extensions);
  }
  return extensions;
}

function parseExtension(pck: Certificate): PckExtensions {
  const ext = pck.extensions.get(SGX_EXTENSIONS);
  if (ext === undefined) throw new CasError('CERT_CHAIN_INVALID', `PCK certificate "${pck.subjectCn}" has no Intel SGX extension`);
  const reader: DerReader = new DerReader(ext.value, 'CERT_CHAIN_INVALID', 'Intel SGX extension');
  const entries = new Map<string, Buffer>();
  for (const entry of reader.children(reader.expect(reader.root(), TAG.SEQUENCE, 'SGX extensions'))) {
    const [oidTlv, valueTlv] = reader.children(reader.expect(entry, TAG.SEQUENCE, 'SGX extension entry'));
    if (oidTlv === undefined || valueTlv === undefined) reader.fail('SGX extension entry without a value');
    entries.set(reader.oid(oidTlv), reader.raw(valueTlv));
  }

  const tcbDer = entries.get(TCB) ?? reader.fail('the TCB entry is missing');
  const tcbReader: DerReader = new DerReader(tcbDer, 'CERT_CHAIN_INVALID', 'PCK TCB extension');
  const components = new Map<string, { tag: number; bytes: Buffer; value?: number }>();
  for (const entry of tcbReader.children(tcbReader.expect(tcbReader.root(), TAG.SEQUENCE, 'TCB'))) {
    const [oidTlv, valueTlv] = tcbReader.children(tcbReader.expect(entry, TAG.SEQUENCE, 'TCB entry'));
    if (oidTlv === undefined || valueTlv === undefined) tcbReader.fail('TCB entry without a value');
    const oid = tcbReader.oid(oidTlv);
    if (valueTlv.tag === TAG.INTEGER) components.set(oid, { tag: valueTlv.tag, bytes: tcbReader.content(valueTlv), value: Number(tcbReader.integer(valueTlv)) });
    else components.set(oid, { tag: valueTlv.tag, bytes: tcbReader.content(valueTlv) });
  }
  const integerAt = (n: number, name: string): number => {
    const value = components.get(`${TCB}.${n}`)?.value;
    if (value === undefined || value < 0) tcbReader.fail(`${name} is missing or not an integer`);
    return value;
  };
  const sgxTcbComponents = Array.from({ length: 16 }, (_, i) => integerAt(i + 1, `SGX TCB component ${i + 1}`));
  const pceSvn = integerAt(17, 'PCE SVN');
  const cpuSvn = components.get(`${TCB}.18`);
  if (cpuSvn === undefined || cpuSvn.tag !== TAG.OCTET_STRING || cpuSvn.bytes.length !== 16) tcbReader.fail('CPUSVN is missing or not 16 bytes');

  return {
    sgxTcbComponents,
    pceSvn,
    cpuSvn: cpuSvn.bytes,
    pceId: octetString(reader, entries.get(PCE_ID), 2, 'PCE-ID'),
    fmspc: octetString(reader, entries.get(FMSPC), 6, 'FMSPC'),
  };
}

function octetString(reader: DerReader, der: Buffer | undefined, length: number, name: string): Buffer {
  if (der === undefined) reader.fail(`${name} is missing`);
  const inner: DerReader = new DerReader(der, 'CERT_CHAIN_INVALID', name);
  const value = inner.content(inner.expect(inner.root(), TAG.OCTET_STRING, name));
  if (value.length !== length) inner.fail(`expected ${length} bytes, found ${value.length}`);
  return value;
}
