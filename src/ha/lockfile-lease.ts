import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import type { LeaseHolder, LeaseRecord, LeaseStore } from './lease.js';

/** Name of the lease directory inside the data directory. */
export const LEASE_DIRECTORY = 'cas.lease';

/** Generations kept besides the newest, so a slow reader still finds the file it listed. */
const KEPT_GENERATIONS = 8;
const GENERATION_FILE = /^(\d{12})\.json$/;

const recordSchema = z.strictObject({
  holder: z
    .strictObject({
      id: z.string().min(1),
      url: z.string().optional(),
      platformId: z.string().optional(),
      node: z.string().optional(),
      pid: z.number().int().optional(),
      pidNamespace: z.string().optional(),
    })
    .nullable(),
  token: z.number().int().min(1),
  durationMs: z.number().int().min(1),
  renewedAt: z.string(),
});

/**
 * A lease stored as numbered generation files in one directory (`cas.lease/000000000042.json`) on the
 * file system of the data directory. A write creates the next generation with link(2), which fails with
 * EEXIST when the file already exists. So of two instances that read generation N, exactly one creates
 * N+1 (compare-and-swap), and no mutex file can be left behind by a crashed or paused process.
 *
 * This works on a local file system, which is what the local multi-node harness shares. NOTE: link(2)
 * being atomic and exclusive is not guaranteed on every network file system; in a cluster use the
 * Kubernetes Lease instead.
 */
export class LockFileLeaseStore implements LeaseStore {
  readonly location: string;

  constructor(readonly directory: string) {
    this.location = directory;
  }

  /** Creates the store for the lease of the database in `dataDir`. */
  static forDataDir(dataDir: string): LockFileLeaseStore {
    return new LockFileLeaseStore(join(dataDir, LEASE_DIRECTORY));
  }

  async read(): Promise<LeaseRecord | undefined> {
    // A concurrent writer may remove an old generation between listing and reading; list again then.
    for (let attempt = 0; attempt < 5; attempt++) {
      const newest = await this.newestGeneration();
      if (newest === undefined) return undefined;
      try {
        return parseRecord(await fs.readFile(this.pathOf(newest), 'utf8'), newest, this.pathOf(newest));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    throw new CasError('UNAVAILABLE', `Lease directory ${this.directory} changed five times while being read; retry`);
  }

  async compareAndSwap(expected: LeaseRecord | undefined, next: Omit<LeaseRecord, 'version'>): Promise<LeaseRecord | undefined> {
    const generation = expected === undefined ? 1 : Number(expected.version) + 1;
    await fs.mkdir(this.directory, { recursive: true, mode: 0o700 });

    const body = `${JSON.stringify({ holder: next.holder ?? null, token: next.token, durationMs: next.durationMs, renewedAt: next.renewedAt })}\n`;
    const temporary = join(this.directory, `.tmp-${randomBytes(8).toString('hex')}`);
    const handle = await fs.open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(body, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }

    try {
      await fs.link(temporary, this.pathOf(generation));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
      throw new CasError('UNAVAILABLE', `Cannot write lease generation ${generation} in ${this.directory}: ${(error as Error).message}`, { cause: error });
    } finally {
      await fs.rm(temporary, { force: true });
    }
    await this.removeOldGenerations(generation);
    return { ...next, version: String(generation) };
  }

  private pathOf(generation: number): string {
    return join(this.directory, `${String(generation).padStart(12, '0')}.json`);
  }

  private async newestGeneration(): Promise<number | undefined> {
    let names: string[];
    try {
      names = await fs.readdir(this.directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let newest: number | undefined;
    for (const name of names) {
      const match = GENERATION_FILE.exec(name);
      if (match === null) continue;
      const generation = Number(match[1]);
      if (newest === undefined || generation > newest) newest = generation;
    }
    return newest;
  }

  private async removeOldGenerations(newest: number): Promise<void> {
    const names = await fs.readdir(this.directory);
    for (const name of names) {
      const match = GENERATION_FILE.exec(name);
      if (match !== null && Number(match[1]) <= newest - KEPT_GENERATIONS) {
        await fs.rm(join(this.directory, name), { force: true });
      }
    }
  }
}

function parseRecord(text: string, generation: number, path: string): LeaseRecord {
  let parsed: z.infer<typeof recordSchema>;
  try {
    parsed = recordSchema.parse(JSON.parse(text));
  } catch (error) {
    throw new CasError('UNAVAILABLE', `Lease file ${path} is not a valid lease record; remove the ${LEASE_DIRECTORY} directory only when no CAS runs on this data directory`, { cause: error });
  }
  let holder: LeaseHolder | undefined;
  if (parsed.holder !== null) {
    holder = { id: parsed.holder.id };
    if (parsed.holder.url !== undefined) holder.url = parsed.holder.url;
    if (parsed.holder.platformId !== undefined) holder.platformId = parsed.holder.platformId;
    if (parsed.holder.node !== undefined) holder.node = parsed.holder.node;
    if (parsed.holder.pid !== undefined) holder.pid = parsed.holder.pid;
    if (parsed.holder.pidNamespace !== undefined) holder.pidNamespace = parsed.holder.pidNamespace;
  }
  return { holder, token: parsed.token, durationMs: parsed.durationMs, renewedAt: parsed.renewedAt, version: String(generation) };
}
