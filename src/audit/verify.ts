import { createHash, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CasError, type ErrorCode } from '../errors/cas-error.js';
import { AUDIT_EVENTS, GENESIS_HASH, parseAuditLine, signedBytes, type AuditEntry, type AuditEventType, type AuditHead } from './entry.js';
import { expandAuditInputs, splitLines } from './files.js';
import { checkAuditChain, isIssuedBy, spkiDer, verifyEntryBytes } from './signing.js';

export type AuditProblemCode = Extract<ErrorCode, 'AUDIT_INTEGRITY' | 'AUDIT_WRONG_CAS' | 'AUDIT_TRUNCATED' | 'AUDIT_GAP' | 'AUDIT_PARTIAL_LINE'>;

export interface AuditProblem {
  code: AuditProblemCode;
  message: string;
  /** The file and 1-based line number, when the problem is on a line. */
  file?: string;
  line?: number;
}

export interface AuditVerification {
  ok: boolean;
  /** Files in the order they were verified. */
  files: string[];
  /** Number of entries that parsed, including any that failed a later check. */
  entries: number;
  counts: Partial<Record<AuditEventType, number>>;
  /** The last entry read: `{ seq, hash }`. */
  head: AuditHead | undefined;
  firstSeq: number | undefined;
  /** False when the first file starts with a `log.rotated` entry, so older files were not given. */
  fromGenesis: boolean;
  /** Lower-case hex SHA-256 of the DER of the CAS certificate that the chains in the log name. */
  casCertificateSha256: string | undefined;
  /** Problems in file order; the first one decides the exit code. At most MAX_PROBLEMS are listed. */
  problems: AuditProblem[];
}

export interface VerifyAuditOptions {
  /** The CAS certificate (PEM) the audit key must be issued by. Without it, every chain must name one CAS. */
  casCertificatePem?: string;
  /** The head the CAS reports; the files must reach it with the same hash. */
  expectedHead?: AuditHead;
}

export const MAX_PROBLEMS = 100;

/**
 * Reads and verifies audit log files; directories expand to the log files inside, oldest first. Files are
 * read one at a time, so memory use is bounded by the largest file (the writer rotates at 64 MiB by default).
 */
export async function verifyAuditLog(options: VerifyAuditOptions & { files: string[] }): Promise<AuditVerification> {
  if (options.files.length === 0) throw new CasError('INVALID_ARGUMENT', 'No audit log files given; pass at least one file or directory.');
  const paths = await expandAuditInputs(options.files);
  const state = new VerificationState(options);
  for (const [index, path] of paths.entries()) state.verifyFile(path, await readFile(path), index === paths.length - 1);
  state.checkExpectedHead();
  return state.result(paths);
}

/** Throws the CasError of the first problem, naming file and line; returns the result when it is intact. */
export function assertAuditIntact(result: AuditVerification): AuditVerification {
  const first = result.problems[0];
  if (first === undefined) return result;
  const place = first.file === undefined ? '' : ` (${first.file}${first.line === undefined ? '' : `, line ${first.line}`})`;
  throw new CasError(first.code, `${first.message}${place}`, { details: { ...first } });
}

/**
 * Verifies the contents of audit log files in rotation order. Per line: valid canonical JSON, schema and
 * hash, then the certificate chain when the entry carries one, then the signature with the audit key of the
 * latest chain, then `seq` and `prev` against the entry before. Files are given as bytes, so this function
 * does no I/O.
 */
export function verifyAuditContents(files: Array<{ name: string; content: Buffer }>, options: VerifyAuditOptions = {}): AuditVerification {
  const state = new VerificationState(options);
  files.forEach((file, index) => state.verifyFile(file.name, file.content, index === files.length - 1));
  state.checkExpectedHead();
  return state.result(files.map((file) => file.name));
}

class VerificationState {
  private readonly problems: AuditProblem[] = [];
  private readonly counts: Partial<Record<AuditEventType, number>> = {};
  private entries = 0;
  private last: AuditEntry | undefined;
  private firstSeq: number | undefined;
  private fromGenesis = true;
  private auditKey: KeyObject | undefined;
  private casSpki: Buffer | undefined;
  private casCertificateSha256: string | undefined;
  /** Set after a line that did not parse, so the next entry is not also reported as a gap. */
  private resync = false;
  private hashAtExpectedSeq: string | undefined;

  constructor(private readonly options: VerifyAuditOptions) {}

  verifyFile(file: string, content: Buffer, isLastFile: boolean): void {
    if (content.length === 0) return;
    const complete = content.at(-1) === 0x0a;
    const lines = splitLines(complete ? content.subarray(0, -1) : content);
    const partial = complete ? undefined : lines.pop();

    lines.forEach((line, index) => this.verifyLine(file, index + 1, line));

    if (partial === undefined) return;
    const line = lines.length + 1;
    if (isLastFile) {
      this.report({
        code: 'AUDIT_PARTIAL_LINE',
        message: `the last line is incomplete (${partial.length} bytes without a final newline), as a crash during a write leaves it; reopening the log removes it`,
        file,
        line,
      });
    } else {
      // The writer rotates a file only after every line in it was written and fsynced, so no crash leaves this.
      this.report({ code: 'AUDIT_INTEGRITY', message: `a rotated file ends with an incomplete line (${partial.length} bytes)`, file, line });
    }
  }

  private verifyLine(file: string, line: number, bytes: Buffer): void {
    const parsed = parseAuditLine(bytes);
    if (!parsed.ok) {
      this.report({ code: 'AUDIT_INTEGRITY', message: `invalid entry: ${parsed.reason}`, file, line });
      this.resync = true;
      return;
    }
    const entry = parsed.entry;
    this.entries++;
    this.counts[entry.event] = (this.counts[entry.event] ?? 0) + 1;

    this.checkChain(entry, file, line);
    this.checkSignature(entry, file, line);
    this.checkSequence(entry, file, line);

    if (this.options.expectedHead !== undefined && entry.seq === this.options.expectedHead.seq) this.hashAtExpectedSeq = entry.hash;
    this.last = entry;
    this.resync = false;
  }

  private checkChain(entry: AuditEntry, file: string, line: number): void {
    if (entry.chain === undefined) {
      if (line === 1) this.report({ code: 'AUDIT_INTEGRITY', message: 'the first entry of a file does not carry the certificate chain', file, line });
      else if (entry.event === 'cas.started') this.report({ code: 'AUDIT_INTEGRITY', message: 'a cas.started entry does not carry the certificate chain', file, line });
      return;
    }

    const check = checkAuditChain(entry.chain, new Date(entry.time));
    if (!check.ok) {
      this.auditKey = undefined;
      this.report({ code: 'AUDIT_WRONG_CAS', message: `the audit key is not linked to a CAS certificate: ${check.reason}`, file, line });
      return;
    }
    this.auditKey = check.auditKey;

    const casSpki = spkiDer(check.casCertificate.publicKey);
    if (this.options.casCertificatePem !== undefined) {
      if (!isIssuedBy(check.auditCertificate, this.options.casCertificatePem)) {
        this.report({ code: 'AUDIT_WRONG_CAS', message: 'the audit key certificate is not issued by the given CAS certificate', file, line });
      }
    } else if (this.casSpki !== undefined && !this.casSpki.equals(casSpki)) {
      this.report({ code: 'AUDIT_WRONG_CAS', message: 'the certificate chain names a different CAS key than the chains before it', file, line });
    }
    this.casSpki ??= casSpki;
    this.casCertificateSha256 ??= createHash('sha256').update(check.casCertificate.raw).digest('hex');
  }

  private checkSignature(entry: AuditEntry, file: string, line: number): void {
    if (this.auditKey === undefined) {
      this.report({ code: 'AUDIT_INTEGRITY', message: 'no valid certificate chain precedes the entry, so its signature cannot be checked', file, line });
      return;
    }
    if (!verifyEntryBytes(this.auditKey, signedBytes(entry), entry.sig)) {
      this.report({ code: 'AUDIT_INTEGRITY', message: 'the signature does not verify with the audit key', file, line });
    }
  }

  private checkSequence(entry: AuditEntry, file: string, line: number): void {
    if (this.resync) return;
    const previous = this.last;
    if (previous === undefined) {
      this.firstSeq = entry.seq;
      if (entry.seq === 1) {
        if (entry.prev !== GENESIS_HASH) this.report({ code: 'AUDIT_INTEGRITY', message: 'the entry with seq 1 does not start from the genesis hash', file, line });
      } else if (entry.event === 'log.rotated') {
        this.fromGenesis = false;
      } else {
        this.report({ code: 'AUDIT_GAP', message: `the log starts at seq ${entry.seq} without a log.rotated entry, so earlier entries are missing`, file, line });
      }
      return;
    }

    if (entry.seq !== previous.seq + 1) {
      const kind = entry.seq <= previous.seq ? 'out of order' : 'a gap';
      this.report({ code: 'AUDIT_GAP', message: `seq ${entry.seq} follows seq ${previous.seq} (${kind})`, file, line });
    } else if (entry.prev !== previous.hash) {
      this.report({ code: 'AUDIT_INTEGRITY', message: `prev of seq ${entry.seq} is not the hash of seq ${previous.seq}`, file, line });
    }
  }

  checkExpectedHead(): void {
    const expected = this.options.expectedHead;
    if (expected === undefined) return;
    if (expected.seq === 0) {
      // A CAS that has written nothing reports seq 0 with the genesis hash; any files given extend it.
      if (expected.hash !== GENESIS_HASH) this.report({ code: 'AUDIT_INTEGRITY', message: 'the CAS head has seq 0 but not the genesis hash' });
      return;
    }
    const lastSeq = this.last?.seq ?? 0;
    if (lastSeq < expected.seq) {
      this.report({ code: 'AUDIT_TRUNCATED', message: `the files end at seq ${lastSeq} but the CAS head is seq ${expected.seq}; entries after seq ${lastSeq} are missing` });
    } else if (this.hashAtExpectedSeq !== undefined && this.hashAtExpectedSeq !== expected.hash) {
      this.report({ code: 'AUDIT_INTEGRITY', message: `the entry with seq ${expected.seq} differs from the CAS head` });
    } else if (this.hashAtExpectedSeq === undefined) {
      this.report({ code: 'AUDIT_GAP', message: `the files do not contain seq ${expected.seq}, the CAS head` });
    }
  }

  result(files: string[]): AuditVerification {
    const counts: Partial<Record<AuditEventType, number>> = {};
    for (const event of AUDIT_EVENTS) if (this.counts[event] !== undefined) counts[event] = this.counts[event];
    return {
      ok: this.problems.length === 0,
      files,
      entries: this.entries,
      counts,
      head: this.last === undefined ? undefined : { seq: this.last.seq, hash: this.last.hash },
      firstSeq: this.firstSeq,
      fromGenesis: this.fromGenesis,
      casCertificateSha256: this.casCertificateSha256,
      problems: this.problems,
    };
  }

  private report(problem: AuditProblem): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(problem);
  }
}
