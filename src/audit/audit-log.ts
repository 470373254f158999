import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { access, mkdir, open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import {
  AUDIT_FORMAT_VERSION,
  GENESIS_HASH,
  entryLine,
  parseAuditLine,
  sha256Hex,
  signedBytes,
  unsignedAuditEntrySchema,
  type AuditEntry,
  type AuditEventInput,
  type AuditHead,
  type UnsignedAuditEntry,
} from './entry.js';
import { endOfLastCompleteLine, listRotatedFiles, parseRotatedFileName, readFirstLine, readFully, readLastLines, rotatedFileName } from './files.js';
import { auditHmac } from './hmac.js';
import { isP256Key, signEntryBytes, spkiDer } from './signing.js';

export type { AuditHead };

/** The audit key and the chain that links it to the CAS identity: `[audit certificate, CAS certificate, ...]`. */
export interface AuditSigner {
  privateKey: KeyObject;
  certificateChainPem: string[];
}

export interface AuditLogOptions {
  /** The active log file, e.g. `<data-dir>/audit/cas_audit.log`; rotated files are written beside it. */
  path: string;
  signer: AuditSigner;
  /** The per-CAS key for `hmac()`, at least 32 bytes. */
  hmacKey: Buffer;
  /** Size above which the file is rotated before the next write. */
  maxFileBytes?: number;
  logger: Logger;
  /** The head stored in the database: opening fails with AUDIT_TRUNCATED when the files are behind it. */
  head?: AuditHead;
  /** Clock for entry times. */
  now?: () => Date;
}

/** Bytes that `open` removed from the end of the file: a line whose write was interrupted. */
export interface AuditRepair {
  file: string;
  truncatedBytes: number;
}

export const DEFAULT_MAX_AUDIT_FILE_BYTES = 64 * 1024 * 1024;

interface PendingAppend {
  input: AuditEventInput;
  resolve: (head: AuditHead) => void;
  reject: (error: Error) => void;
}

interface PendingRotation {
  previousFile: string;
  previousFirstSeq: number;
  previousLastSeq: number;
}

/**
 * The audit log writer. Appends are queued and written in batches: one write and one fsync per batch, so
 * concurrent appends share an fsync (group commit), and each append resolves only after its line is on
 * disk. Sequence numbers are assigned in queue order, gap-free.
 *
 * After a failed write or fsync every pending append rejects with AUDIT_APPEND_FAILED and so does every
 * later one: the state of the file is then unknown, and reopening the log repairs and re-reads it. One
 * process writes a log at a time; the log takes no lock, because the server's primary lease already
 * guarantees a single writer.
 */
export class AuditLog {
  private readonly queue: PendingAppend[] = [];
  private flushing: Promise<void> | undefined;
  private failure: CasError | undefined;
  private closed = false;
  private appended = 0;
  private batches = 0;

  private constructor(
    private readonly options: Required<Pick<AuditLogOptions, 'path' | 'maxFileBytes' | 'now'>> & AuditLogOptions,
    private readonly validity: CertificateValidity,
    private handle: FileHandle,
    private size: number,
    /** Seq of the first entry of the active file, undefined while it is empty. */
    private fileFirstSeq: number | undefined,
    private last: AuditHead,
    /** Set when the active file is new after a rotation: its first entry must be `log.rotated`. */
    private pendingRotation: PendingRotation | undefined,
    readonly repair: AuditRepair | undefined,
  ) {}

  /**
   * Opens (or creates) the log and finds its head. A partial last line, left by a crash during a write, is
   * truncated: it was never acknowledged, because acknowledged lines were fsynced whole. Fails with
   * AUDIT_INTEGRITY when the last complete entry is invalid, and with AUDIT_TRUNCATED when `head` is ahead
   * of the files.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    const validity = checkSigner(options.signer);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/.test(basename(options.path))) {
      // Rotated file names are written into log.rotated entries, whose schema accepts only such names.
      throw new CasError('INVALID_ARGUMENT', `Invalid audit log file name ${JSON.stringify(basename(options.path))}; use letters, digits and _.- only.`);
    }
    auditHmac(options.hmacKey, ''); // rejects a short key now rather than at the first hmac() call
    const settings = {
      ...options,
      maxFileBytes: options.maxFileBytes ?? DEFAULT_MAX_AUDIT_FILE_BYTES,
      now: options.now ?? (() => new Date()),
    };
    const { path, logger } = settings;
    checkValidity(validity, settings.now());

    await mkdir(dirname(path), { recursive: true });
    const existed = await exists(path);
    const handle = await open(path, 'a+');
    try {
      if (!existed) await fsyncDirectory(dirname(path));
      const size = (await handle.stat()).size;
      const completeEnd = await endOfLastCompleteLine(handle, size);

      // Find the head and compare it with the stored one before changing the file, so that a log that is
      // behind the database keeps every byte for investigation.
      const { last, fileFirstSeq, pendingRotation } = await findHead(handle, completeEnd, path);
      if (options.head !== undefined) await checkStoredHead(handle, completeEnd, last, options.head, path, logger);

      let repair: AuditRepair | undefined;
      if (completeEnd < size) repair = await removePartialLine(handle, path, completeEnd, size, logger);

      logger.info({ file: path, seq: last.seq, repaired: repair !== undefined }, 'opened the audit log');
      return new AuditLog(settings, validity, handle, completeEnd, fileFirstSeq, last, pendingRotation, repair);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  /** Returns the seq and hash of the last entry on disk, or `{ seq: 0, hash: GENESIS_HASH }` for an empty log. */
  head(): AuditHead {
    return { ...this.last };
  }

  /** Entries written and write-plus-fsync batches since open; `batches < appended` shows group commit at work. */
  stats(): { appended: number; batches: number } {
    return { appended: this.appended, batches: this.batches };
  }

  /** `auditHmac` under this CAS's key, for values that entries must correlate without revealing. */
  hmac(value: string | Buffer): string {
    return auditHmac(this.options.hmacKey, value);
  }

  /**
   * Appends an entry and resolves with its seq and hash once its line is written and fsynced. Rejects with
   * AUDIT_APPEND_FAILED when the write or fsync fails or failed before. Rejects with INTERNAL when the entry
   * does not match the schema, and then the entry takes no sequence number.
   */
  append(input: AuditEventInput): Promise<AuditHead> {
    if (this.closed) return Promise.reject(new CasError('AUDIT_APPEND_FAILED', 'The audit log is closed; reopen it to append.'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<AuditHead>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Waits for queued appends, then closes the file. Later appends reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    // After a failed rotation the handle may already be closed; closing it again changes nothing.
    await this.handle.close().catch(() => undefined);
  }

  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      if (this.failure !== undefined) {
        for (const pending of batch) pending.reject(this.failure);
        continue;
      }
      try {
        await this.writeBatch(batch);
      } catch (error) {
        // writeBatch handles I/O failures itself; anything else is a bug, and the log stops accepting entries.
        this.fail(error, batch, 'write');
      }
    }
    this.flushing = undefined;
  }

  private async writeBatch(batch: PendingAppend[]): Promise<void> {
    try {
      checkValidity(this.validity, this.options.now());
    } catch (error) {
      this.fail(error, batch, 'sign');
      return;
    }

    try {
      if (this.size > this.options.maxFileBytes && this.fileFirstSeq !== undefined) await this.rotate();
    } catch (error) {
      this.fail(error, batch, 'rotate');
      return;
    }

    const lines: Buffer[] = [];
    const accepted: Array<{ pending: PendingAppend; head: AuditHead }> = [];
    let previous = this.last;
    let firstInFile = this.fileFirstSeq === undefined;
    const add = (unsigned: Omit<UnsignedAuditEntry, 'v' | 'seq' | 'time' | 'prev' | 'chain'>): AuditEntry => {
      const carriesChain = firstInFile || unsigned.event === 'cas.started';
      const candidate = {
        ...unsigned,
        v: AUDIT_FORMAT_VERSION,
        seq: previous.seq + 1,
        time: this.options.now().toISOString(),
        prev: previous.hash,
        ...(carriesChain ? { chain: this.options.signer.certificateChainPem } : {}),
      };
      const unsignedEntry = unsignedAuditEntrySchema.parse(candidate) as UnsignedAuditEntry;
      const bytes = signedBytes(unsignedEntry);
      const entry = { ...unsignedEntry, hash: sha256Hex(bytes), sig: signEntryBytes(this.options.signer.privateKey, bytes) } as AuditEntry;
      lines.push(entryLine(entry));
      previous = { seq: entry.seq, hash: entry.hash };
      firstInFile = false;
      return entry;
    };

    if (this.pendingRotation !== undefined) {
      add({ event: 'log.rotated', actor: { kind: 'cas' }, outcome: 'success', details: { ...this.pendingRotation } });
    }
    for (const pending of batch) {
      try {
        add(pending.input);
        accepted.push({ pending, head: previous });
      } catch (error) {
        pending.reject(new CasError('INTERNAL', 'The audit entry does not match the audit schema; it was not written.', { cause: error }));
      }
    }
    if (lines.length === 0) return;

    const data = Buffer.concat(lines);
    try {
      await writeFully(this.handle, data);
      await this.handle.sync();
    } catch (error) {
      this.fail(error, accepted.map((item) => item.pending), 'write');
      return;
    }

    this.fileFirstSeq ??= this.last.seq + 1;
    this.size += data.length;
    this.last = previous;
    this.pendingRotation = undefined;
    this.appended += lines.length;
    this.batches++;
    for (const { pending, head } of accepted) pending.resolve(head);
  }

  /** Renames the full active file to its rotated name and starts a new, empty active file. */
  private async rotate(): Promise<void> {
    const { path, logger } = this.options;
    const firstSeq = this.fileFirstSeq!;
    const rotatedName = rotatedFileName(basename(path), firstSeq, this.last.seq);
    const rotatedPath = join(dirname(path), rotatedName);
    if (await exists(rotatedPath)) {
      throw new Error(`the rotated file ${rotatedPath} already exists`);
    }

    await this.handle.close();
    await rename(path, rotatedPath);
    this.handle = await open(path, 'a+');
    await fsyncDirectory(dirname(path));

    this.size = 0;
    this.fileFirstSeq = undefined;
    this.pendingRotation = { previousFile: rotatedName, previousFirstSeq: firstSeq, previousLastSeq: this.last.seq };
    logger.info({ file: path, rotatedFile: rotatedPath, firstSeq, lastSeq: this.last.seq }, 'rotated the audit log');
  }

  private fail(error: unknown, pending: PendingAppend[], step: 'sign' | 'write' | 'rotate'): void {
    const cause = error instanceof Error ? error : new Error(String(error));
    const message = `Writing the audit log ${this.options.path} failed (${cause.message}); no further entries are accepted until the log is reopened.`;
    this.failure = isCasError(cause, 'AUDIT_APPEND_FAILED') ? cause : new CasError('AUDIT_APPEND_FAILED', message, { cause });
    this.options.logger.error({ err: cause, file: this.options.path, step, pending: pending.length + this.queue.length }, 'audit log append failed');
    for (const item of pending) item.reject(this.failure);
    for (const item of this.queue.splice(0)) item.reject(this.failure);
  }
}

/** Finds the head of the log: the last complete line of the active file, or of the newest rotated file. */
async function findHead(
  handle: FileHandle,
  completeEnd: number,
  path: string,
): Promise<{ last: AuditHead; fileFirstSeq: number | undefined; pendingRotation: PendingRotation | undefined }> {
  if (completeEnd > 0) {
    const last = headOf(await readLastLines(handle, completeEnd, 1), path);
    const firstLine = await readFirstLine(handle, completeEnd);
    return { last, fileFirstSeq: firstLine === undefined ? undefined : entryOf(firstLine, path, 'first').seq, pendingRotation: undefined };
  }

  // An empty active file after rotated files: the writer stopped between renaming the full file and
  // writing the first entry of the new one. Continue the chain from the newest rotated file.
  const rotated = (await listRotatedFiles(path)).at(-1);
  if (rotated === undefined) return { last: { seq: 0, hash: GENESIS_HASH }, fileFirstSeq: undefined, pendingRotation: undefined };
  const last = await headOfFile(rotated);
  const range = parseRotatedFileName(basename(path), basename(rotated))!;
  return { last, fileFirstSeq: undefined, pendingRotation: { previousFile: basename(rotated), previousFirstSeq: range.firstSeq, previousLastSeq: last.seq } };
}

/**
 * Truncates the bytes after the last `\n`: a line whose write was interrupted, so never an acknowledged
 * entry. They are first copied to `<log>.partial-<time>` beside the log, in case they are not from a crash.
 */
async function removePartialLine(handle: FileHandle, path: string, completeEnd: number, size: number, logger: Logger): Promise<AuditRepair> {
  const partial = Buffer.alloc(size - completeEnd);
  await readFully(handle, partial, completeEnd);
  const savedTo = `${path}.partial-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await writeFile(savedTo, partial, { flag: 'wx', flush: true });

  await handle.truncate(completeEnd);
  await handle.sync();
  await fsyncDirectory(dirname(path));
  logger.warn({ file: path, truncatedBytes: partial.length, offset: completeEnd, savedTo }, 'removed a partial last line from the audit log');
  return { file: path, truncatedBytes: partial.length };
}

interface CertificateValidity {
  notBefore: Date;
  notAfter: Date;
}

/** Checks the signer and returns the validity period of its audit certificate. */
function checkSigner(signer: AuditSigner): CertificateValidity {
  const [auditPem] = signer.certificateChainPem;
  if (signer.certificateChainPem.length < 2 || auditPem === undefined) {
    throw new CasError('INVALID_ARGUMENT', 'The audit signer needs a chain of at least the audit certificate and the CAS certificate.');
  }
  if (!isP256Key(signer.privateKey)) throw new CasError('INVALID_ARGUMENT', 'The audit key must be an ECDSA P-256 private key.');
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(auditPem);
  } catch (error) {
    throw new CasError('INVALID_ARGUMENT', 'The audit certificate (first in the chain) does not parse as a PEM X.509 certificate.', { cause: error });
  }
  if (!spkiDer(certificate.publicKey).equals(spkiDer(createPublicKey(signer.privateKey)))) {
    throw new CasError('INVALID_ARGUMENT', 'The audit key does not match the first certificate of the chain; pass the audit certificate first.');
  }
  return { notBefore: new Date(certificate.validFrom), notAfter: new Date(certificate.validTo) };
}

/** Throws when `time` is outside the audit certificate's validity, since verifiers reject entries signed then. */
function checkValidity(validity: CertificateValidity, time: Date): void {
  if (time < validity.notBefore || time > validity.notAfter) {
    throw new CasError(
      'AUDIT_APPEND_FAILED',
      `The audit certificate is valid from ${validity.notBefore.toISOString()} to ${validity.notAfter.toISOString()}, not at ${time.toISOString()}; issue a new audit certificate.`,
      { details: { notBefore: validity.notBefore.toISOString(), notAfter: validity.notAfter.toISOString() } },
    );
  }
}

function entryOf(line: Buffer, file: string, which: 'first' | 'last'): AuditEntry {
  const parsed = parseAuditLine(line);
  if (!parsed.ok) {
    throw new CasError('AUDIT_INTEGRITY', `The ${which} entry of the audit log ${file} is invalid (${parsed.reason}); run \`cas audit verify\` on it.`, {
      details: { file, reason: parsed.reason },
    });
  }
  return parsed.entry;
}

function headOf(lines: Buffer[], file: string): AuditHead {
  const line = lines.at(-1);
  if (line === undefined) throw new CasError('AUDIT_INTEGRITY', `The audit log ${file} has no complete entry.`);
  const entry = entryOf(line, file, 'last');
  return { seq: entry.seq, hash: entry.hash };
}

async function headOfFile(path: string): Promise<AuditHead> {
  const handle = await open(path, 'r');
  try {
    const end = await endOfLastCompleteLine(handle, (await handle.stat()).size);
    return headOf(await readLastLines(handle, end, 1), path);
  } finally {
    await handle.close();
  }
}

/** How many lines back `open` looks for the stored head when the file is ahead of it. */
const MAX_LINES_AHEAD_OF_STORED_HEAD = 100_000;

/**
 * Compares the head found in the files with the one the database stored. Files behind the database lost
 * acknowledged entries. Files ahead of it are normal after a crash between the audit write and the
 * database commit. Then the entry at the stored seq, when it is in the active file, must have the stored hash.
 */
async function checkStoredHead(handle: FileHandle, size: number, found: AuditHead, stored: AuditHead, file: string, logger: Logger): Promise<void> {
  if (found.seq < stored.seq) {
    throw new CasError(
      'AUDIT_TRUNCATED',
      `The audit log ${file} ends at seq ${found.seq} but the database records seq ${stored.seq}; acknowledged entries are missing. Restore the log from backup or investigate before starting.`,
      { details: { file, fileSeq: found.seq, databaseSeq: stored.seq } },
    );
  }
  if (found.seq === stored.seq) {
    if (found.hash !== stored.hash) throw hashMismatch(file, stored);
    return;
  }

  const ahead = found.seq - stored.seq;
  if (ahead < MAX_LINES_AHEAD_OF_STORED_HEAD) {
    const lines = await readLastLines(handle, size, ahead + 1);
    const entry = lines.length === ahead + 1 ? parseAuditLine(lines[0]!) : undefined;
    if (entry?.ok && entry.entry.seq === stored.seq && entry.entry.hash !== stored.hash) throw hashMismatch(file, stored);
  }
  logger.warn({ file, fileSeq: found.seq, databaseSeq: stored.seq }, 'the audit log has entries after the head stored in the database');
}

function hashMismatch(file: string, stored: AuditHead): CasError {
  return new CasError('AUDIT_INTEGRITY', `The entry at seq ${stored.seq} of the audit log ${file} differs from the one the database records; run \`cas audit verify\`.`, {
    details: { file, seq: stored.seq },
  });
}

async function writeFully(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    if (bytesWritten === 0) throw new Error('the write made no progress');
    offset += bytesWritten;
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
