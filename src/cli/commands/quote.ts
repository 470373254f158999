import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { outputFormat, printResult } from '../../client/output.js';
import { CasError } from '../../errors/cas-error.js';
import type { EvidenceResult } from '../../attestation/evidence-result.js';
import { decodeEvidenceBytes, evidenceKind } from '../../attestation/evidence-bytes.js';
import { parseCollateralFile } from '../../attestation/intel/collateral.js';
import { verifyIntelQuote } from '../../attestation/intel/verify-quote.js';
import { verifySnpReport } from '../../attestation/snp/verify-report.js';

interface QuoteVerifyFlags {
  collateral?: string;
  rootCa?: string;
  at?: string;
  vcek?: string;
  ask?: string;
  ark?: string;
  output?: string;
}

/** `cas quote verify`: verifies SGX and TDX quotes (and SEV-SNP reports) offline. */
export function register(program: Command): void {
  const quote = program.command('quote').description('inspect and verify attestation evidence');
  quote
    .command('verify')
    .description('verify an SGX or TDX quote (raw or hex) against collateral offline, or an SEV-SNP report against its VCEK; prints the TCB status and measurements')
    .argument('<file>', 'quote or report file: raw bytes or hex (0x prefix optional); bytes after the quote are ignored')
    .option('--collateral <file>', 'Intel collateral JSON (PCK CRL and issuer chain, root CA CRL, TCB Info, QE identity)')
    .option('--root-ca <pem>', 'trusted Intel SGX Root CA certificate file (default: the embedded Intel SGX Root CA)')
    .option('--at <unix-seconds>', 'verify as of this time, in seconds since the UNIX epoch (default: now)')
    .option('--vcek <file>', 'SEV-SNP: VCEK certificate (DER or PEM)')
    .option('--ask <file>', 'SEV-SNP: ASK certificate (PEM or DER)')
    .option('--ark <file>', 'SEV-SNP: trusted ARK certificate (PEM or DER)')
    .option('--output <format>', 'text or json', 'text')
    .action(async (file: string, flags: QuoteVerifyFlags) => {
      const format = outputFormat(flags.output);
      const at = verificationTime(flags.at);
      const evidence = decodeEvidenceBytes(await readInput(file, 'evidence'));
      const result = evidenceKind(evidence) === 'intel' ? await verifyIntel(evidence, flags, at) : await verifySnp(evidence, flags, at);
      printResult(format, toJson(result, at), formatText(result));
    });
}

async function verifyIntel(quote: Buffer, flags: QuoteVerifyFlags, at: Date): Promise<EvidenceResult> {
  if (flags.collateral === undefined) {
    throw new CasError('INVALID_ARGUMENT', 'offline verification of an Intel quote needs --collateral FILE');
  }
  const collateral = parseCollateralFile((await readInput(flags.collateral, 'collateral')).toString('utf8'));
  const rootCa = flags.rootCa === undefined ? undefined : await readInput(flags.rootCa, 'root CA');
  return verifyIntelQuote(quote, collateral, { at, ...(rootCa === undefined ? {} : { rootCa }) });
}

async function verifySnp(report: Buffer, flags: QuoteVerifyFlags, at: Date): Promise<EvidenceResult> {
  if (flags.vcek === undefined || flags.ask === undefined || flags.ark === undefined) {
    throw new CasError('INVALID_ARGUMENT', 'verifying an SEV-SNP report needs --vcek FILE, --ask FILE and --ark FILE');
  }
  const [vcek, ask, ark] = await Promise.all([readInput(flags.vcek, 'VCEK'), readInput(flags.ask, 'ASK'), readInput(flags.ark, 'ARK')]);
  return verifySnpReport(report, { vcek: pemOrDer(vcek), ask: pemOrDer(ask), trustedArks: [pemOrDer(ark)], at });
}

function pemOrDer(bytes: Buffer): Buffer | string {
  return bytes.subarray(0, 11).toString('latin1') === '-----BEGIN ' ? bytes.toString('utf8') : bytes;
}

function verificationTime(value: string | undefined): Date {
  if (value === undefined) return new Date();
  if (!/^\d+$/.test(value)) throw new CasError('INVALID_ARGUMENT', `invalid --at "${value}"; expected seconds since the UNIX epoch`);
  return new Date(Number(value) * 1000);
}

async function readInput(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new CasError('INVALID_ARGUMENT', `cannot read the ${what} file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

function toJson(result: EvidenceResult, at: Date): Record<string, unknown> {
  return {
    valid: true,
    verifiedAt: Math.floor(at.getTime() / 1000),
    teeType: result.teeType,
    tcbStatus: result.tcbStatus,
    advisoryIds: result.advisoryIds,
    measurements: result.measurements,
    reportData: result.reportData.toString('hex'),
  };
}

function formatText(result: EvidenceResult): string {
  const rows: Array<[string, string]> = [
    ['TEE type', result.teeType],
    ['TCB status', result.tcbStatus],
    ['advisory ids', result.advisoryIds.length === 0 ? '(none)' : result.advisoryIds.join(', ')],
  ];
  for (const [name, value] of Object.entries(result.measurements)) rows.push([name, String(value)]);
  rows.push(['reportData', result.reportData.toString('hex')]);
  const width = Math.max(...rows.map(([name]) => name.length)) + 1;
  return rows.map(([name, value]) => `${(name + ':').padEnd(width + 1)}${value}`).join('\n');
}
