import { z } from 'zod';
import { CasError } from '../../errors/cas-error.js';

/**
 * The collateral that verifying an Intel quote needs besides the quote. The signed JSON items are kept
 * as the exact text that Intel signed: the signature covers those bytes, so they are never re-serialised.
 */
export interface IntelCollateral {
  /** PEM: the CA that issued the PCK CRL, then the root. */
  pckCrlIssuerChain: string;
  /** DER: the Intel SGX Root CA CRL (revokes intermediate CAs). */
  rootCaCrl: Buffer;
  /** DER: the CRL of the PCK Processor or Platform CA (revokes PCK certificates). */
  pckCrl: Buffer;
  /** PEM: the TCB Signing certificate, then the root. */
  tcbInfoIssuerChain: string;
  /** The `tcbInfo` JSON text exactly as served. */
  tcbInfo: string;
  /** ECDSA P-256 signature of `tcbInfo`, r || s. */
  tcbInfoSignature: Buffer;
  qeIdentityIssuerChain: string;
  /** The `enclaveIdentity` JSON text exactly as served. */
  qeIdentity: string;
  qeIdentitySignature: Buffer;
}

const collateralFileSchema = z.object({
  pck_crl_issuer_chain: z.string(),
  root_ca_crl: z.string(),
  pck_crl: z.string(),
  tcb_info_issuer_chain: z.string(),
  tcb_info: z.string(),
  tcb_info_signature: z.string(),
  qe_identity_issuer_chain: z.string(),
  qe_identity: z.string(),
  qe_identity_signature: z.string(),
});

/**
 * Reads collateral in the JSON file format used by dcap-qvl and by `cas quote verify --collateral`: one
 * object whose values are strings (PEM chains, hex DER CRLs, the signed JSON texts and hex signatures).
 */
export function parseCollateralFile(text: string): IntelCollateral {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CasError('COLLATERAL_INVALID', `collateral file is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const parsed = collateralFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CasError('COLLATERAL_INVALID', `collateral file: field ${issue.path.join('.') || '(root)'} is invalid: ${issue.message}`);
  }
  const c = parsed.data;
  return {
    pckCrlIssuerChain: c.pck_crl_issuer_chain,
    rootCaCrl: crlBytes(c.root_ca_crl, 'root_ca_crl'),
    pckCrl: crlBytes(c.pck_crl, 'pck_crl'),
    tcbInfoIssuerChain: c.tcb_info_issuer_chain,
    tcbInfo: c.tcb_info,
    tcbInfoSignature: hexBytes(c.tcb_info_signature, 'tcb_info_signature'),
    qeIdentityIssuerChain: c.qe_identity_issuer_chain,
    qeIdentity: c.qe_identity,
    qeIdentitySignature: hexBytes(c.qe_identity_signature, 'qe_identity_signature'),
  };
}

/** Writes collateral in the format that `parseCollateralFile` reads. */
export function formatCollateralFile(collateral: IntelCollateral): string {
  return JSON.stringify({
    pck_crl_issuer_chain: collateral.pckCrlIssuerChain,
    root_ca_crl: collateral.rootCaCrl.toString('hex'),
    pck_crl: collateral.pckCrl.toString('hex'),
    tcb_info_issuer_chain: collateral.tcbInfoIssuerChain,
    tcb_info: collateral.tcbInfo,
    tcb_info_signature: collateral.tcbInfoSignature.toString('hex'),
    qe_identity_issuer_chain: collateral.qeIdentityIssuerChain,
    qe_identity: collateral.qeIdentity,
    qe_identity_signature: collateral.qeIdentitySignature.toString('hex'),
  });
}

function hexBytes(value: string, field: string): Buffer {
  const text = value.trim().replace(/^0x/i, '');
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new CasError('COLLATERAL_INVALID', `collateral field ${field} is not hex`);
  }
  return Buffer.from(text, 'hex');
}

/** Accepts a CRL as hex DER, PEM (X509 CRL) or DER bytes, which are the encodings PCS and PCCS serve. */
export function crlBytes(value: string | Buffer, field: string): Buffer {
  const text = typeof value === 'string' ? value : value.toString('latin1');
  const pem = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]+)-----END X509 CRL-----/.exec(text);
  if (pem !== null) return Buffer.from(pem[1]!.replace(/\s+/g, ''), 'base64');
  if (typeof value !== 'string' && value[0] === 0x30) return value;
  return hexBytes(text, field);
}

const svnComponent = z.object({ svn: z.number().int().min(0).max(255) }).loose();
const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`), `expected ${bytes} bytes of hex`);
const statusSchema = z.string();
const dateSchema = z.iso.datetime({ offset: true });

const tcbLevelSchema = z
  .object({
    tcb: z
      .object({
        sgxtcbcomponents: z.array(svnComponent).length(16),
        pcesvn: z.number().int().min(0),
        tdxtcbcomponents: z.array(svnComponent).length(16).optional(),
      })
      .loose(),
    tcbDate: dateSchema,
    tcbStatus: statusSchema,
    advisoryIDs: z.array(z.string()).optional(),
  })
  .loose();

const moduleTcbLevelSchema = z
  .object({ tcb: z.object({ isvsvn: z.number().int().min(0) }).loose(), tcbDate: dateSchema, tcbStatus: statusSchema, advisoryIDs: z.array(z.string()).optional() })
  .loose();

/** TCB Info v3 (SGX and TDX), the version PCS API v4 serves. */
export const tcbInfoSchema = z
  .object({
    id: z.enum(['SGX', 'TDX']),
    version: z.literal(3),
    issueDate: dateSchema,
    nextUpdate: dateSchema,
    fmspc: hex(6),
    pceId: hex(2),
    tcbType: z.number().int(),
    tcbEvaluationDataNumber: z.number().int(),
    tdxModule: z.object({ mrsigner: hex(48), attributes: hex(8), attributesMask: hex(8) }).loose().optional(),
    tdxModuleIdentities: z
      .array(z.object({ id: z.string(), mrsigner: hex(48), attributes: hex(8), attributesMask: hex(8), tcbLevels: z.array(moduleTcbLevelSchema) }).loose())
      .optional(),
    tcbLevels: z.array(tcbLevelSchema).min(1),
  })
  .loose();
export type TcbInfo = z.infer<typeof tcbInfoSchema>;
export type TcbLevel = z.infer<typeof tcbLevelSchema>;

/** Enclave Identity v2 (QE and TD_QE), the version PCS API v4 serves. */
export const qeIdentitySchema = z
  .object({
    id: z.enum(['QE', 'TD_QE', 'QVE']),
    version: z.literal(2),
    issueDate: dateSchema,
    nextUpdate: dateSchema,
    tcbEvaluationDataNumber: z.number().int(),
    miscselect: hex(4),
    miscselectMask: hex(4),
    attributes: hex(16),
    attributesMask: hex(16),
    mrsigner: hex(32),
    isvprodid: z.number().int().min(0).max(0xffff),
    tcbLevels: z.array(moduleTcbLevelSchema).min(1),
  })
  .loose();
export type QeIdentity = z.infer<typeof qeIdentitySchema>;

/** Parses signed JSON text against a schema; the text itself stays the input to signature checks. */
export function parseSignedJson<T>(text: string, schema: z.ZodType<T>, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CasError('COLLATERAL_INVALID', `${what} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CasError('COLLATERAL_INVALID', `${what}: field ${issue.path.join('.') || '(root)'} is invalid: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * Returns the exact source text of the value of top-level key `key` in the JSON object `text`. PCS sends
 * `{"tcbInfo":{...},"signature":"..."}` and signs the bytes of the inner object as sent, so the inner
 * object must be cut out of the body, not re-serialised from a parsed object.
 */
export function rawJsonMember(text: string, key: string): string | undefined {
  let i = skipSpace(text, 0);
  if (text[i] !== '{') throw new CasError('COLLATERAL_INVALID', 'response body is not a JSON object');
  i = skipSpace(text, i + 1);
  while (i < text.length && text[i] !== '}') {
    const keyEnd = scanValue(text, i);
    const name = JSON.parse(text.slice(i, keyEnd)) as unknown;
    i = skipSpace(text, keyEnd);
    if (text[i] !== ':') throw new CasError('COLLATERAL_INVALID', `response body: expected ':' at offset ${i}`);
    const valueStart = skipSpace(text, i + 1);
    const valueEnd = scanValue(text, valueStart);
    if (name === key) return text.slice(valueStart, valueEnd);
    i = skipSpace(text, valueEnd);
    if (text[i] === ',') i = skipSpace(text, i + 1);
  }
  return undefined;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  return i;
}

/** Returns the offset one past the JSON value that starts at `start`. */
function scanValue(text: string, start: number): number {
  const first = text[start];
  if (first === '"') {
    let i = start + 1;
    while (i < text.length) {
      if (text[i] === '\\') i += 2;
      else if (text[i] === '"') return i + 1;
      else i++;
    }
    throw new CasError('COLLATERAL_INVALID', 'response body: unterminated string');
  }
  if (first === '{' || first === '[') {
    let depth = 0;
    let i = start;
    while (i < text.length) {
      const c = text[i]!;
      if (c === '"') {
        i = scanValue(text, i);
        continue;
      }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    throw new CasError('COLLATERAL_INVALID', 'response body: unterminated object or array');
  }
  let i = start;
  while (i < text.length && !',}] \t\r\n'.includes(text[i]!)) i++;
  if (i === start) throw new CasError('COLLATERAL_INVALID', `response body: expected a value at offset ${start}`);
  return i;
}
