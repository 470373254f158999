import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { CasApp } from '../server/app-types.js';
import { requireClientKey } from '../server/client-identity.js';
import { invalidRequest } from '../server/http-errors.js';
import type { CasOwner } from '../server/provisioning.js';
import { listSnapshots } from './inspect.js';
import { MANIFEST_FILE, parseSnapshotName } from './names.js';

/** Largest range one request returns, so that neither side keeps a whole database in memory. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

/** The files of a snapshot directory that can be downloaded. */
export const SNAPSHOT_FILES = [MANIFEST_FILE, 'cas.db', 'cas.key-store'] as const;

const schemas = {
  noQuery: z.strictObject({}),
  fileParams: z.strictObject({
    name: z.string().refine((name) => parseSnapshotName(name) !== undefined, 'expected a snapshot name such as snapshot-20260101T000000.000Z'),
    file: z.enum(SNAPSHOT_FILES),
  }),
  range: z.strictObject({
    offset: z.coerce.number().int().min(0).default(0),
    length: z.coerce.number().int().min(1).max(MAX_CHUNK_BYTES).default(MAX_CHUNK_BYTES),
  }),
};

function parse<T extends z.ZodType>(schema: T, value: unknown, part: 'params' | 'query'): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw invalidRequest(part, result.error);
  return result.data;
}

/**
 * Registers the snapshot download routes (CAS owner only), used by `kubectl provision cas --local-backup`:
 * `GET /v1/snapshots` lists the snapshots newest first, and `GET /v1/snapshots/:name/files/:file` returns
 * a byte range of one file as base64. A snapshot's database and key store are encrypted and wrapped for
 * registered platforms, so a copy is useless without a registered platform key; the owner check keeps
 * even that copy from anyone else.
 */
export function registerSnapshotDownloadRoutes(app: CasApp, context: { snapshotDir: string; owner: () => CasOwner | undefined }): void {
  const requireOwner = (request: Parameters<typeof requireClientKey>[0]): void => {
    const owner = context.owner();
    if (owner === undefined) throw new CasError('NOT_PROVISIONED', 'this CAS is not provisioned yet, so it has no owner who may download snapshots');
    const caller = requireClientKey(request);
    if (caller.keyHash !== owner.keyHash) {
      throw new CasError('PERMISSION_DENIED', `only the CAS owner may download snapshots; client key ${caller.keyHash} is not the owner`);
    }
  };

  app.get('/v1/snapshots', async (request) => {
    parse(schemas.noQuery, request.query, 'query');
    requireOwner(request);
    let listing;
    try {
      listing = await listSnapshots(context.snapshotDir);
    } catch (error) {
      if (isCasError(error, 'NOT_FOUND')) return { snapshots: [] };
      throw error;
    }
    return {
      snapshots: listing
        .filter((entry) => entry.status !== 'incomplete')
        .map((entry) => ({ name: entry.name, status: entry.status, createdAt: entry.createdAt ?? null, changeCounter: entry.changeCounter ?? null, databaseBytes: entry.databaseBytes ?? null })),
    };
  });

  app.get('/v1/snapshots/:name/files/:file', async (request) => {
    const { name, file } = parse(schemas.fileParams, request.params, 'params');
    const { offset, length } = parse(schemas.range, request.query, 'query');
    requireOwner(request);

    const path = join(context.snapshotDir, name, file);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CasError('NOT_FOUND', `snapshot ${name} has no ${file}; it may have been deleted by the retention policy, list the snapshots again`);
      throw error;
    }
    try {
      const size = (await handle.stat()).size;
      if (offset > size) throw new CasError('INVALID_ARGUMENT', `offset ${offset} is beyond the end of ${name}/${file} (${size} bytes)`);
      const buffer = Buffer.alloc(Math.min(length, size - offset));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      return { name, file, size, offset, contentBase64: buffer.subarray(0, bytesRead).toString('base64') };
    } finally {
      await handle.close();
    }
  });
}
