import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  checkBinding,
  evaluateEvidence,
  FileCollateralStore,
  IntelCollateralCache,
  KdsClient,
  PcsClient,
  reportDataFor,
  verifyHardwareEvidence,
  type EvidenceResult,
  type HardwareVerifierOptions,
} from '../../attestation/index.js';
import { TCB_STATUSES, type AuditEventInput } from '../../audit/entry.js';
import type { ServerSettings } from '../../config/settings.js';
import { ENV_VARS } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';
import type { Logger } from '../../logging/logger.js';
import type { Session, Service } from '../../policy/types.js';
import type { EvidenceBinding, VerifiedEvidence } from './verify.js';

/** Intel PCS v4 base URL, the default source of Intel collateral. */
export const INTEL_PCS_URL = 'https://api.trustedservices.intel.com';
/** Intel PCS serves no root CA CRL; Intel publishes it here. */
export const INTEL_ROOT_CA_CRL_URL = 'https://certificates.trustedservices.intel.com/IntelSGXRootCA.der';
/** Subdirectory of the data directory that keeps fetched Intel collateral across restarts. */
export const COLLATERAL_SUBDIR = 'collateral';

/**
 * Hardware evidence on the wire (JSON): `{ "type": "sgx" | "tdx", "quote": base64 }` for an Intel DCAP
 * quote, `{ "type": "snp", "report": base64 }` for an SEV-SNP attestation report. The report data of the
 * quote or report must be `reportDataFor(nonce bytes, SPKI DER of the TLS client key)`.
 */
const BASE64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64').max(64 * 1024);
export const hardwareEvidenceSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('sgx'), quote: BASE64 }),
  z.strictObject({ type: z.literal('tdx'), quote: BASE64 }),
  z.strictObject({ type: z.literal('snp'), report: BASE64 }),
]);
export type HardwareEvidence = z.infer<typeof hardwareEvidenceSchema>;
export const HARDWARE_EVIDENCE_TYPES: ReadonlySet<string> = new Set(['sgx', 'tdx', 'snp']);

/** Builds the wire form of collected evidence. */
export function hardwareEvidence(teeType: 'sgx' | 'tdx' | 'snp', bytes: Buffer): HardwareEvidence {
  return teeType === 'snp' ? { type: 'snp', report: bytes.toString('base64') } : { type: teeType, quote: bytes.toString('base64') };
}

/** Parses the wire form; throws EVIDENCE_INVALID naming the problem. */
export function parseHardwareEvidence(input: unknown): { type: 'sgx' | 'tdx' | 'snp'; bytes: Buffer } {
  const parsed = hardwareEvidenceSchema.safeParse(input);
  if (!parsed.success) {
    throw new CasError('EVIDENCE_INVALID', `hardware evidence is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  const evidence = parsed.data;
  return { type: evidence.type, bytes: Buffer.from(evidence.type === 'snp' ? evidence.report : evidence.quote, 'base64') };
}

/**
 * Computes the report data that evidence must carry for a nonce and a client key. The default is
 * `reportDataFor`; see `createHardwareEvidenceVerifier` for the test-only replacement.
 */
export type ReportDataBinding = (nonce: Buffer, publicKeyDer: Buffer) => Buffer;

/** Verified hardware evidence: the generic claims plus the verifier's full result for policy evaluation. */
export interface HardwareVerifiedEvidence extends VerifiedEvidence {
  simulated: false;
  result: EvidenceResult;
}

export function isHardwareVerified(verified: VerifiedEvidence): verified is HardwareVerifiedEvidence {
  return !verified.simulated && (verified as Partial<HardwareVerifiedEvidence>).result !== undefined;
}

/** Verifies the hardware evidence types; other types are left to the caller (undefined). */
export interface HardwareEvidenceVerifier {
  verify(evidence: unknown, binding: EvidenceBinding): Promise<HardwareVerifiedEvidence | undefined>;
}

export interface HardwareVerifierSetup {
  settings: Pick<ServerSettings, 'dataDir' | 'pcsUrl' | 'pccsUrl' | 'dcapApiKeyFile' | 'intelRootCaFile' | 'amdArkFile' | 'kdsUrl'>;
  logger: Logger;
  /** Environment that contains CAS_DCAP_API_KEY; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Test-only clock for collateral validity and the cache; the system clock otherwise. */
  now?: () => Date;
  /** Test-only replacement of `reportDataFor`; see CasServerOptions.reportDataBinding. */
  reportDataBinding?: ReportDataBinding;
}

/**
 * Creates the verifier of SGX, TDX and SEV-SNP evidence from the server settings: Intel collateral from
 * PCS (or a PCCS) through a cache that persists under `<data-dir>/collateral`, VCEKs from AMD KDS, the
 * embedded or configured Intel root and the pinned AMD ARK. Reads the trust anchors and the DCAP API key
 * once, here; the key is never logged.
 */
export async function createHardwareEvidenceVerifier(setup: HardwareVerifierSetup): Promise<HardwareEvidenceVerifier> {
  const { settings, logger } = setup;
  if (settings.pcsUrl !== undefined && settings.pccsUrl !== undefined) {
    throw new CasError('CONFIG_INVALID', 'give either --pcs-url or --pccs-url, not both: Intel collateral comes from one source');
  }
  const apiKey = await dcapApiKey(settings.dcapApiKeyFile, setup.env ?? process.env);
  const pcs = new PcsClient(
    settings.pccsUrl !== undefined
      ? { baseUrl: settings.pccsUrl, ...(apiKey === undefined ? {} : { apiKey }) }
      : { baseUrl: settings.pcsUrl ?? INTEL_PCS_URL, rootCaCrlUrl: INTEL_ROOT_CA_CRL_URL, ...(apiKey === undefined ? {} : { apiKey }) },
  );
  const collateralDir = join(settings.dataDir, COLLATERAL_SUBDIR);
  const cache = new IntelCollateralCache(pcs, { store: new FileCollateralStore(collateralDir), logger, ...(setup.now === undefined ? {} : { now: setup.now }) });

  const options: HardwareVerifierOptions = { intelCollateral: cache, ...(setup.now === undefined ? {} : { now: setup.now }) };
  if (settings.intelRootCaFile !== undefined) options.intelRootCa = await readAnchor(settings.intelRootCaFile, '--intel-root-ca');
  if (settings.amdArkFile !== undefined) {
    const ark = await readAnchor(settings.amdArkFile, '--amd-ark');
    options.snp = { kds: new KdsClient(settings.kdsUrl === undefined ? {} : { baseUrl: settings.kdsUrl }), product: amdProductOfArk(ark, settings.amdArkFile), trustedArks: [ark] };
  }
  logger.info(
    {
      intelCollateral: settings.pccsUrl !== undefined ? { pccs: settings.pccsUrl } : { pcs: settings.pcsUrl ?? INTEL_PCS_URL },
      dcapApiKeyConfigured: apiKey !== undefined,
      collateralDir,
      intelRootCa: settings.intelRootCaFile ?? 'embedded',
      amdArk: settings.amdArkFile ?? 'none: SEV-SNP evidence is rejected',
      ...(options.snp === undefined ? {} : { amdProduct: options.snp.product }),
    },
    'hardware evidence verification configured',
  );

  const expectedReportData = setup.reportDataBinding ?? reportDataFor;
  return {
    async verify(evidence, binding) {
      const type = (evidence as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || !HARDWARE_EVIDENCE_TYPES.has(type)) return undefined;
      const parsed = parseHardwareEvidence(evidence);
      const result = await verifyHardwareEvidence(parsed.bytes, options);
      if (result.teeType !== parsed.type) {
        throw new CasError('EVIDENCE_INVALID', `the evidence is labelled "${parsed.type}" but contains ${result.teeType.toUpperCase()} evidence`);
      }
      checkReportData(result, expectedReportData(nonceBytes(binding.nonce), binding.publicKeyDer), binding, setup.reportDataBinding === undefined);
      return {
        type: result.teeType,
        simulated: false,
        claims: { tcbStatus: result.tcbStatus, advisoryIds: result.advisoryIds, measurements: result.measurements },
        result,
      };
    },
  };
}

/**
 * Decodes a nonce for the report data binding. The registry issues nonces as lower-case hex text, and the
 * binding covers the bytes that the text encodes (32 bytes for a nonce of this CAS), not the text.
 */
export function nonceBytes(nonce: string): Buffer {
  if (!/^(?:[0-9a-f]{2})+$/.test(nonce)) throw new CasError('NONCE_INVALID', 'the nonce must be lower-case hex with an even number of digits');
  return Buffer.from(nonce, 'hex');
}

function checkReportData(result: EvidenceResult, expected: Buffer, binding: EvidenceBinding, standard: boolean): void {
  if (standard) {
    checkBinding(result, nonceBytes(binding.nonce), binding.publicKeyDer);
    return;
  }
  // Only reachable with the test-only binding seam; same check, against the replaced expectation.
  if (!result.reportData.equals(expected)) {
    throw new CasError('EVIDENCE_INVALID', 'the evidence report data does not bind this nonce and client public key; request a fresh nonce and attest again over the same TLS key', {
      details: { expected: expected.toString('hex'), actual: result.reportData.toString('hex') },
    });
  }
}

/**
 * Checks verified hardware evidence against the service's attestation variants and the session's
 * security settings; throws ATTESTATION_REJECTED with every mismatch in `details.mismatches`.
 */
export function evaluateServiceEvidence(verified: HardwareVerifiedEvidence, service: Service, session: Session): void {
  // A session that admits simulated evidence (mode none) admits genuine evidence of a service without
  // variants too, since that proves more; variants, where given, still apply.
  if (session.security.mode === 'none' && service.attestation.length === 0) return;
  try {
    evaluateEvidence(verified.result, service.attestation, session.security);
  } catch (error) {
    if (error instanceof CasError && error.code === 'ATTESTATION_REJECTED') {
      const rejection = new CasError('ATTESTATION_REJECTED', `service "${service.name}" of session "${session.name}": ${error.message}`, {
        details: { session: session.name, service: service.name, ...error.details },
      });
      const { teeType, tcbStatus, advisoryIds, measurements } = verified.result;
      Object.defineProperty(rejection, rejectedEvidenceKey, { value: { teeType, tcbStatus, advisoryIds, measurements } satisfies RejectedEvidence });
      throw rejection;
    }
    throw error;
  }
}

type AttestedDetails = Extract<AuditEventInput, { event: 'service.attested' }>['details'];
type RejectedDetails = Extract<AuditEventInput, { event: 'service.rejected' }>['details'];

const AUDIT_EVIDENCE_TYPE = { sgx: 'sgx-dcap', tdx: 'tdx', snp: 'sev-snp' } as const;

/** Audit details of attested hardware evidence: type, measurements, TCB status and advisories, no report data. */
export function attestedDetails(verified: HardwareVerifiedEvidence): AttestedDetails {
  const { result } = verified;
  return {
    evidenceType: AUDIT_EVIDENCE_TYPE[result.teeType],
    measurements: auditMeasurements(result.measurements),
    tcbStatus: auditTcbStatus(result.tcbStatus) ?? 'NotEvaluated',
    ...(result.advisoryIds.length === 0 ? {} : { advisories: result.advisoryIds }),
  };
}

/**
 * Returns the audit details of a rejected request beyond its error code. For a policy rejection of genuine
 * evidence, these are the evidence type, measurements, TCB status and advisories. The mismatch list goes
 * to the response and the log only, because the audit schema has no field for it.
 */
export function rejectedAuditDetails(error: CasError): Omit<RejectedDetails, 'reason'> {
  const evidence = rejectedEvidence(error);
  if (evidence === undefined) return {};
  const tcbStatus = auditTcbStatus(evidence.tcbStatus);
  return {
    evidenceType: AUDIT_EVIDENCE_TYPE[evidence.teeType],
    measurements: auditMeasurements(evidence.measurements),
    ...(tcbStatus === undefined ? {} : { tcbStatus }),
    ...(evidence.advisoryIds.length === 0 ? {} : { advisories: evidence.advisoryIds }),
  };
}

/** Log fields of a rejected request: the mismatches (field, expected, actual) of a policy rejection. */
export function rejectionLogFields(error: CasError): Record<string, unknown> {
  if (error.code !== 'ATTESTATION_REJECTED' || error.details === undefined) return {};
  const { mismatches, teeType, tcbStatus } = error.details;
  return { mismatches, teeType, tcbStatus };
}

/** Evidence facts that evaluateServiceEvidence attaches to its error; read back only for the audit entry. */
const rejectedEvidenceKey = Symbol('rejected evidence');
type RejectedEvidence = Pick<EvidenceResult, 'teeType' | 'tcbStatus' | 'advisoryIds' | 'measurements'>;

function rejectedEvidence(error: CasError): RejectedEvidence | undefined {
  return (error as CasError & { [rejectedEvidenceKey]?: RejectedEvidence })[rejectedEvidenceKey];
}

function auditTcbStatus(status: string): AttestedDetails['tcbStatus'] | undefined {
  return (TCB_STATUSES as readonly string[]).includes(status) ? (status as AttestedDetails['tcbStatus']) : undefined;
}

/** Measurements in the audit schema's shape: defined values only, hex strings, integers and flags. */
function auditMeasurements(measurements: EvidenceResult['measurements']): AttestedDetails['measurements'] {
  const out: AttestedDetails['measurements'] = {};
  for (const [key, value] of Object.entries(measurements)) {
    if (typeof value === 'boolean' || (typeof value === 'number' && Number.isInteger(value) && value >= 0)) out[key] = value;
    else if (typeof value === 'string' && /^[0-9a-f]{1,256}$/.test(value)) out[key] = value;
  }
  return out;
}

async function dcapApiKey(file: string | undefined, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new CasError('CONFIG_INVALID', `cannot read the DCAP API key file ${file} (--dcap-api-key-file): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
    }
    const key = text.trim();
    if (key === '') throw new CasError('CONFIG_INVALID', `the DCAP API key file ${file} (--dcap-api-key-file) is empty`);
    return key;
  }
  const key = env[ENV_VARS.dcapApiKey]?.trim();
  return key === undefined || key === '' ? undefined : key;
}

async function readAnchor(file: string, flag: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (error) {
    throw new CasError('CONFIG_INVALID', `cannot read ${file} (${flag}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  try {
    new X509Certificate(pem);
  } catch (error) {
    throw new CasError('CONFIG_INVALID', `${file} (${flag}) is not a PEM certificate`, { cause: error });
  }
  return pem;
}

/** Returns the KDS product line of an ARK, from its subject (`CN=ARK-Milan`, `ARK-Genoa`, `ARK-Turin`). */
export function amdProductOfArk(pem: string, file: string): string {
  const subject = new X509Certificate(pem).subject;
  const product = /(?:^|\n)CN=ARK-([A-Za-z]+)/.exec(subject)?.[1];
  if (product === undefined) throw new CasError('CONFIG_INVALID', `${file} (--amd-ark) is not an AMD ARK: its subject "${subject.replace(/\n/g, ', ')}" has no CN=ARK-<product>`);
  return product;
}
