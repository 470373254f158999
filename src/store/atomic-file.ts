import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CasError } from '../errors/cas-error.js';

/**
 * Writes `bytes` to `path` with mode 0600 so that a crash leaves the old or the new content, never a mix:
 * a temporary file in the same directory (created with O_EXCL), fsync, rename over `path`, fsync of the
 * directory. Throws INTERNAL naming the path when a step fails; the temporary file is removed.
 */
export function writeFileAtomic(path: string, bytes: Buffer): void {
  const dir = dirname(path);
  const temporary = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(temporary, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    try {
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
    fsyncDirectory(dir);
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // The temporary file was renamed or never created.
    }
    throw new CasError('INTERNAL', `Cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Flushes a directory's entries (a created, renamed or removed file) to disk. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
