import { gzipSync } from 'node:zlib';
import { CasError } from '../../../errors/cas-error.js';

export interface TarEntry {
  /** Relative path with `/` separators, at most 100 bytes (no ustar prefix field is used). */
  name: string;
  content: Buffer;
  /** Permission bits; default 0o600, because a report can contain Secret values. */
  mode?: number;
}

const BLOCK = 512;

/**
 * Writes regular files as a gzip-compressed POSIX ustar archive (IEEE Std 1003.1-1988 header layout),
 * readable by GNU tar, bsdtar and Python's tarfile. Directories are implied by the paths. Owner is uid and
 * gid 0 with empty names, and every entry has the modification time `mtime`.
 */
export function createTarGz(entries: TarEntry[], mtime: Date = new Date()): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    blocks.push(header(entry, Math.floor(mtime.getTime() / 1000)));
    blocks.push(entry.content);
    const padding = (BLOCK - (entry.content.length % BLOCK)) % BLOCK;
    if (padding > 0) blocks.push(Buffer.alloc(padding));
  }
  // The archive ends with two zero blocks.
  blocks.push(Buffer.alloc(2 * BLOCK));
  return gzipSync(Buffer.concat(blocks));
}

function header(entry: TarEntry, mtimeSeconds: number): Buffer {
  const name = Buffer.from(entry.name, 'utf8');
  if (name.length === 0 || name.length > 100 || entry.name.startsWith('/') || entry.name.split('/').includes('..')) {
    throw new CasError('INTERNAL', `invalid tar entry name "${entry.name}": expected a relative path of 1 to 100 bytes without ..`);
  }
  const block = Buffer.alloc(BLOCK);
  name.copy(block, 0);
  writeOctal(block, 100, 8, entry.mode ?? 0o600);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, entry.content.length);
  writeOctal(block, 136, 12, mtimeSeconds);
  block.write('        ', 148, 8, 'ascii'); // checksum field counts as spaces while summing
  block.write('0', 156, 1, 'ascii'); // regular file
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

/** Writes `value` as zero-padded octal digits followed by NUL, filling `length` bytes. */
function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new CasError('INTERNAL', `tar header value ${value} does not fit in ${length - 1} octal digits`);
  block.write(digits.padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}
