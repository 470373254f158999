import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CasError } from '../errors/cas-error.js';

/**
 * File naming and low-level reading shared by the writer and the verifier.
 *
 * A rotated file is named `<active name>.<first seq>-<last seq>` with both numbers zero-padded to 12 digits.
 * So a plain name sort orders the rotated files of one log, and the active file comes after them.
 */

const SEQ_DIGITS = 12;

export function rotatedFileName(activeName: string, firstSeq: number, lastSeq: number): string {
  return `${activeName}.${String(firstSeq).padStart(SEQ_DIGITS, '0')}-${String(lastSeq).padStart(SEQ_DIGITS, '0')}`;
}

/** Returns the sequence range encoded in a rotated file name, or undefined when `name` is not a rotated file of `activeName`. */
export function parseRotatedFileName(activeName: string, name: string): { firstSeq: number; lastSeq: number } | undefined {
  if (!name.startsWith(activeName + '.')) return undefined;
  const match = /^(\d{12})-(\d{12})$/.exec(name.slice(activeName.length + 1));
  if (match === null) return undefined;
  return { firstSeq: Number(match[1]), lastSeq: Number(match[2]) };
}

/** Lists the rotated files of the log whose active file is `activePath`, oldest first. */
export async function listRotatedFiles(activePath: string): Promise<string[]> {
  const directory = dirname(activePath);
  const activeName = basename(activePath);
  const names = await readdir(directory);
  return names
    .filter((name) => parseRotatedFileName(activeName, name) !== undefined)
    .sort()
    .map((name) => join(directory, name));
}

/**
 * Expands the verifier's inputs: a file stays as it is, and a directory becomes the audit log files in it
 * (every `*.log` file with its rotated files, rotated files first in sequence order). Directories must hold
 * exactly one log.
 */
export async function expandAuditInputs(inputs: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new CasError('NOT_FOUND', `The audit log file ${input} does not exist; check the path.`);
    }
    if (!info.isDirectory()) {
      files.push(input);
      continue;
    }

    const names = await readdir(input);
    // The active file may be missing for a moment during rotation, so rotated names also name their log.
    const activeNames = [
      ...new Set([...names.filter((name) => name.endsWith('.log')), ...names.flatMap((name) => /^(.+\.log)\.\d{12}-\d{12}$/.exec(name)?.[1] ?? [])]),
    ];
    if (activeNames.length !== 1) {
      throw new CasError(
        'INVALID_ARGUMENT',
        `The directory ${input} contains ${activeNames.length} audit logs (*.log files); it must contain exactly one, or pass the files instead.`,
      );
    }
    const activeName = activeNames[0]!;
    const rotated = names.filter((name) => parseRotatedFileName(activeName, name) !== undefined).sort();
    files.push(...rotated.map((name) => join(input, name)));
    if (names.includes(activeName)) files.push(join(input, activeName));
  }
  return files;
}

/**
 * Reads up to `count` complete lines that end before `end` (the offset just after a `\n`), newest last,
 * without their `\n`. Reads backwards in chunks, so only the tail of a large file is read.
 */
export async function readLastLines(handle: FileHandle, end: number, count: number): Promise<Buffer[]> {
  if (end === 0 || count <= 0) return [];
  const chunkSize = 64 * 1024;
  let start = end;
  let tail = Buffer.alloc(0);
  // Count the `\n` characters in the tail: `count` lines need `count + 1` of them, or the start of the file.
  while (start > 0 && countNewlines(tail) <= count) {
    const readStart = Math.max(0, start - chunkSize);
    const chunk = Buffer.alloc(start - readStart);
    await readFully(handle, chunk, readStart);
    tail = Buffer.concat([chunk, tail]);
    start = readStart;
  }
  const lines = splitLines(tail.subarray(0, tail.length - 1));
  if (start > 0) lines.shift(); // the first piece is part of an older line
  return lines.slice(-count);
}

/** Reads the first line of a file (without its `\n`), or undefined when the file has no complete line. */
export async function readFirstLine(handle: FileHandle, size: number): Promise<Buffer | undefined> {
  const chunkSize = 64 * 1024;
  let read = 0;
  let head = Buffer.alloc(0);
  while (read < size) {
    const chunk = Buffer.alloc(Math.min(chunkSize, size - read));
    await readFully(handle, chunk, read);
    read += chunk.length;
    head = Buffer.concat([head, chunk]);
    const newline = head.indexOf(0x0a);
    if (newline >= 0) return head.subarray(0, newline);
  }
  return undefined;
}

/** Offset just after the last `\n` of the file (0 when there is none). */
export async function endOfLastCompleteLine(handle: FileHandle, size: number): Promise<number> {
  const chunkSize = 64 * 1024;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunkSize);
    const chunk = Buffer.alloc(end - start);
    await readFully(handle, chunk, start);
    const newline = chunk.lastIndexOf(0x0a);
    if (newline >= 0) return start + newline + 1;
    end = start;
  }
  return 0;
}

export async function openForReading(path: string): Promise<FileHandle> {
  return open(path, 'r');
}

export async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, position + offset);
    if (bytesRead === 0) throw new Error(`unexpected end of file at offset ${position + offset}`);
    offset += bytesRead;
  }
}

function countNewlines(buffer: Buffer): number {
  let n = 0;
  for (let i = buffer.indexOf(0x0a); i >= 0; i = buffer.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** Splits on `\n`; the input must not end with the final `\n`. */
export function splitLines(buffer: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = buffer.indexOf(0x0a); i >= 0; i = buffer.indexOf(0x0a, start)) {
    lines.push(buffer.subarray(start, i));
    start = i + 1;
  }
  lines.push(buffer.subarray(start));
  return lines;
}
