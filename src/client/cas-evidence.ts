import {
  evaluateEvidence,
  IntelCollateralCache,
  KdsClient,
  PcsClient,
  reportDataFor,
  verifyHardwareEvidence,
  type AttestationSecurity,
  type AttestationVariant,
  type EvidenceResult,
  type HardwareVerifierOptions,
  type Tolerance,
} from '../attestation/index.js';
import { TOLERANCES } from '../attestation/requirements.js';
import { ENV_VARS } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { amdProductOfArk, HARDWARE_EVIDENCE_TYPES, INTEL_PCS_URL, INTEL_ROOT_CA_CRL_URL, nonceBytes, parseHardwareEvidence, type ReportDataBinding } from '../server/evidence/hardware.js';

/** Requirements of `cas attest` for the evidence of a hardware CAS. */
export interface CasExpectations {
  /** Accepted measurements; the evidence must satisfy at least one variant. */
  variants: AttestationVariant[];
  security: Omit<AttestationSecurity, 'mode'>;
}

export interface CasCollateralOptions {
  pcsUrl?: string;
  pccsUrl?: string;
  /** Intel DCAP API key; read from CAS_DCAP_API_KEY by the CLI. */
  dcapApiKey?: string;
  intelRootCaPem?: string;
  amdArkPem?: string;
  kdsUrl?: string;
}

export interface VerifyCasEvidenceOptions {
  /** The client's nonce, lower-case hex; its bytes are bound into the report data. */
  nonce: string;
  /** DER of the certificate the CAS presented on the TLS connection that returned the evidence. */
  certificateDer: Buffer;
  expectations: CasExpectations;
  collateral: CasCollateralOptions;
  /** Test-only clock, so recorded evidence verifies while its collateral was current. */
  now?: () => Date;
  /**
   * Test-only replacement of `reportDataFor(nonce, certificateDer)`: a recorded quote carries fixed report
   * data that no nonce and certificate reproduce. The CLI never sets it.
   */
  reportDataBinding?: ReportDataBinding;
}

/**
 * Verifies the hardware evidence of a CAS before its certificate is pinned: the quote or report is genuine
 * (collateral from Intel PCS or a PCCS, VCEK from AMD KDS), its report data is
 * `reportDataFor(nonce bytes, DER of the presented certificate)` (SHA-256 of the certificate, so the CAS
 * bound the exact certificate of this connection to this client's nonce), and its measurements satisfy one
 * of the expected variants under the TCB tolerances. Returns the verification result.
 */
export async function verifyCasHardwareEvidence(evidence: unknown, options: VerifyCasEvidenceOptions): Promise<EvidenceResult> {
  if (options.expectations.variants.length === 0) {
    throw new CasError(
      'INVALID_ARGUMENT',
      'the CAS sent hardware evidence, but no expected measurement was given; pass --expect mrenclave=HEX, mrsigner=HEX, mrtd=HEX or measurement=HEX, since genuine evidence of unknown code proves nothing',
    );
  }
  const parsed = parseHardwareEvidence(evidence);
  const result = await verifyHardwareEvidence(parsed.bytes, verifierOptions(options.collateral, options.now));
  if (result.teeType !== parsed.type) throw new CasError('EVIDENCE_INVALID', `the CAS labelled its evidence "${parsed.type}" but sent ${result.teeType.toUpperCase()} evidence`);

  const expected = (options.reportDataBinding ?? reportDataFor)(nonceBytes(options.nonce), options.certificateDer);
  if (!result.reportData.equals(expected)) {
    throw new CasError('EVIDENCE_INVALID', 'the CAS evidence does not bind this nonce and the certificate the CAS presented on this connection; a machine in the middle may have answered', {
      details: { expected: expected.toString('hex'), actual: result.reportData.toString('hex') },
    });
  }
  evaluateEvidence(result, options.expectations.variants, { mode: 'hardware', ...options.expectations.security });
  return result;
}

/** True for the evidence types that verifyCasHardwareEvidence handles. */
export function isHardwareEvidenceType(type: unknown): boolean {
  return typeof type === 'string' && HARDWARE_EVIDENCE_TYPES.has(type);
}

function verifierOptions(collateral: CasCollateralOptions, now: (() => Date) | undefined): HardwareVerifierOptions {
  if (collateral.pcsUrl !== undefined && collateral.pccsUrl !== undefined) throw new CasError('INVALID_ARGUMENT', 'give either --pcs-url or --pccs-url, not both');
  const apiKey = collateral.dcapApiKey === undefined ? {} : { apiKey: collateral.dcapApiKey };
  const pcs = new PcsClient(
    collateral.pccsUrl !== undefined
      ? { baseUrl: collateral.pccsUrl, ...apiKey }
      : { baseUrl: collateral.pcsUrl ?? INTEL_PCS_URL, rootCaCrlUrl: INTEL_ROOT_CA_CRL_URL, ...apiKey },
  );
  const options: HardwareVerifierOptions = { intelCollateral: new IntelCollateralCache(pcs, now === undefined ? {} : { now }), ...(now === undefined ? {} : { now }) };
  if (collateral.intelRootCaPem !== undefined) options.intelRootCa = collateral.intelRootCaPem;
  if (collateral.amdArkPem !== undefined) {
    options.snp = {
      kds: new KdsClient(collateral.kdsUrl === undefined ? {} : { baseUrl: collateral.kdsUrl }),
      product: amdProductOfArk(collateral.amdArkPem, '--amd-ark'),
      trustedArks: [collateral.amdArkPem],
    };
  }
  return options;
}

const EXPECT_KEYS = ['mrenclave', 'mrsigner', 'mrtd', 'measurement'] as const;

/**
 * Builds expectations from `--expect KEY=HEX` (repeatable; values of one key are alternatives),
 * `--tolerate a,b` and `--ignore-advisories ID,ID|*`. mrenclave, mrsigner, mrtd and measurement each form
 * their own variant, so evidence matching any one is accepted.
 */
export function parseCasExpectations(expect: string[], tolerate: string | undefined, ignoreAdvisories: string | undefined): CasExpectations {
  const values = new Map<string, string[]>();
  for (const item of expect) {
    const match = /^([a-z]+)=(?:0x)?([0-9a-fA-F]+)$/.exec(item.trim());
    const key = match?.[1];
    if (match === null || key === undefined || !(EXPECT_KEYS as readonly string[]).includes(key)) {
      throw new CasError('INVALID_ARGUMENT', `--expect "${item}" must be KEY=HEX with KEY one of ${EXPECT_KEYS.join(', ')}`);
    }
    const hex = match[2]!.toLowerCase();
    const length = key === 'mrtd' || key === 'measurement' ? 96 : 64;
    if (hex.length !== length) throw new CasError('INVALID_ARGUMENT', `--expect ${key} must be ${length} hex digits, not ${hex.length}`);
    values.set(key, [...(values.get(key) ?? []), hex]);
  }
  const variants: AttestationVariant[] = [];
  if (values.has('mrenclave')) variants.push({ kind: 'mrenclave', mrenclave: values.get('mrenclave')! });
  for (const mrsigner of values.get('mrsigner') ?? []) variants.push({ kind: 'signer', mrsigner });
  if (values.has('mrtd')) variants.push({ kind: 'tdx', mrtd: values.get('mrtd')! });
  if (values.has('measurement')) variants.push({ kind: 'snp', measurement: values.get('measurement')! });

  const tolerances = splitList(tolerate);
  for (const tolerance of tolerances) {
    if (!(TOLERANCES as readonly string[]).includes(tolerance)) throw new CasError('INVALID_ARGUMENT', `--tolerate "${tolerance}" is not one of ${TOLERANCES.join(', ')}`);
  }
  return {
    variants,
    security: { tolerate: tolerances as Tolerance[], ignoreAdvisories: ignoreAdvisories?.trim() === '*' ? '*' : splitList(ignoreAdvisories) },
  };
}

function splitList(text: string | undefined): string[] {
  return (text ?? '').split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/** Returns the client's DCAP API key from CAS_DCAP_API_KEY, or undefined. */
export function clientDcapApiKey(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const key = env[ENV_VARS.dcapApiKey]?.trim();
  return key === undefined || key === '' ? undefined : key;
}
