import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { assertAuditIntact, verifyAuditLog, type AuditVerification } from '../../audit/verify.js';
import type { AuditHead } from '../../audit/entry.js';
import { connectPinned, resolveCasUrl } from '../../client/connect.js';
import { readPinnedCertificate } from '../../client/home.js';
import { CasError } from '../../errors/cas-error.js';

/** The CAS certificate and audit head that `--cas URL` fetches from a running CAS. */
export interface AuditAnchor {
  casCertificatePem: string;
  head: AuditHead;
}

/** Fetches the anchor from `GET /v1/audit/head` of the CAS at `url` (owner only, over pinned TLS). */
export type FetchAuditAnchor = (url: string) => Promise<AuditAnchor>;

export interface AuditCommandDependencies {
  fetchAuditAnchor: FetchAuditAnchor;
}

/**
 * Fetches the default `--cas` anchor: the CAS certificate that `cas attest` pinned in CAS_HOME, which is the
 * CAS identity that issues the audit key's certificate, and the head from `GET /v1/audit/head` over the
 * pinned connection, authenticated as the CAS owner.
 */
const fetchAuditAnchorFromCas: FetchAuditAnchor = async (url) => {
  const { client } = await connectPinned(url);
  const casCertificatePem = readPinnedCertificate(resolveCasUrl(url));
  if (casCertificatePem === undefined) throw new CasError('SERVER_NOT_PINNED', `No pinned certificate for ${url}; run: cas attest --cas ${url}`);
  const head = await client.auditHead();
  if (!Number.isSafeInteger(head?.seq) || head.seq < 0 || typeof head.hash !== 'string' || !/^[0-9a-f]{64}$/.test(head.hash)) {
    throw new CasError('CONNECTION_FAILED', `The CAS at ${url} returned an invalid audit head; expected { seq, hash }.`);
  }
  return { casCertificatePem, head: { seq: head.seq, hash: head.hash } };
};

/** Registers `cas audit verify`. */
export function register(program: Command): void {
  registerAuditCommands(program, { fetchAuditAnchor: fetchAuditAnchorFromCas });
}

export function registerAuditCommands(program: Command, dependencies: AuditCommandDependencies): void {
  const audit = program.command('audit').description('verify audit log files');

  audit
    .command('verify')
    .summary('verify audit log files against the CAS certificate and audit head')
    .description(
      'verify audit log files (or directories of them, oldest first): hashes, signatures, the chain to the CAS certificate, ' +
        'gap-free sequence numbers and, given the CAS head, that no entry is missing at the end. ' +
        'Exit codes: 0 intact, 30 integrity (hash or signature), 31 wrong CAS, 32 truncated, 33 gap or reordering, 34 partial last line.',
    )
    .argument('<files...>', 'audit log files or directories')
    .addOption(
      new Option('--cas <url>', 'fetch the CAS certificate and audit head from this CAS (CAS owner only); defaults to CAS_URL unless --cas-cert or --head is given').conflicts([
        'casCert',
        'head',
      ]),
    )
    .option('--cas-cert <file>', 'PEM file of the CAS certificate that must have issued the audit key')
    .option('--head <seq:hash>', 'the audit head the CAS reports, as SEQ:HASH; detects entries missing at the end')
    .addOption(new Option('-o, --output <format>', 'json: print the result as JSON (default: text)').choices(['json']))
    .action(async (files: string[], flags: { cas?: string; casCert?: string; head?: string; output?: 'json' }) => {
      const anchor = await resolveAnchor(flags, dependencies);
      const result = await verifyAuditLog({ files, ...anchor });
      printResult(result, flags.output);
      assertAuditIntact(result);
    });
}

async function resolveAnchor(
  flags: { cas?: string; casCert?: string; head?: string },
  dependencies: AuditCommandDependencies,
): Promise<{ casCertificatePem?: string; expectedHead?: AuditHead }> {
  const environmentUrl = process.env['CAS_URL'];
  const url = flags.cas ?? (flags.casCert === undefined && flags.head === undefined && environmentUrl ? environmentUrl : undefined);
  if (url !== undefined) {
    const anchor = await dependencies.fetchAuditAnchor(url);
    return { casCertificatePem: anchor.casCertificatePem, expectedHead: anchor.head };
  }

  const anchor: { casCertificatePem?: string; expectedHead?: AuditHead } = {};
  if (flags.casCert !== undefined) {
    try {
      anchor.casCertificatePem = await readFile(flags.casCert, 'utf8');
    } catch (error) {
      throw new CasError('INVALID_ARGUMENT', `Cannot read the CAS certificate file ${flags.casCert}: ${(error as Error).message}`, { cause: error });
    }
  }
  if (flags.head !== undefined) anchor.expectedHead = parseHead(flags.head);
  return anchor;
}

export function parseHead(value: string): AuditHead {
  const match = /^(\d{1,15}):([0-9a-f]{64})$/.exec(value);
  if (match === null) throw new CasError('INVALID_ARGUMENT', `Invalid --head ${JSON.stringify(value)}; expected SEQ:HASH with a decimal seq and 64 lower-case hex characters.`);
  return { seq: Number(match[1]), hash: match[2]! };
}

function printResult(result: AuditVerification, output: 'json' | undefined): void {
  if (output === 'json') {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return;
  }

  const range = result.head === undefined ? 'no entries' : `seq ${result.firstSeq} to ${result.head.seq}`;
  const lines = [
    `${result.ok ? 'intact' : 'NOT intact'}: ${result.entries} entries (${range}) in ${result.files.length} file(s)`,
    ...(result.fromGenesis ? [] : ['the first file continues a rotated log: older files were not given']),
    ...(result.casCertificateSha256 === undefined ? [] : [`CAS certificate sha256: ${result.casCertificateSha256}`]),
    ...(result.head === undefined ? [] : [`head: ${result.head.seq}:${result.head.hash}`]),
    ...Object.entries(result.counts).map(([event, count]) => `  ${event.padEnd(20)} ${count}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  for (const problem of result.problems) {
    const place = problem.file === undefined ? '' : `${problem.file}${problem.line === undefined ? '' : `:${problem.line}`}: `;
    process.stderr.write(`${problem.code}: ${place}${problem.message}\n`);
  }
}
