import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CasError } from '../../errors/cas-error.js';
import type { CollectedEvidence, EvidenceSource } from './evidence-source.js';

export const CONFIGFS_TSM_REPORT_PATH = '/sys/kernel/config/tsm/report';

const PROVIDERS: Record<string, CollectedEvidence['teeType']> = {
  tdx_guest: 'tdx',
  sev_guest: 'snp',
};

export interface ConfigfsTsmOptions {
  /** The configfs-tsm report directory. Default: /sys/kernel/config/tsm/report. */
  basePath?: string;
  /**
   * Use this existing entry instead of creating a fresh one, for containers that cannot create configfs
   * directories but have one bound in. Entries that this source creates are removed after use.
   */
  entryName?: string;
}

/**
 * Collects TDX quotes and SEV-SNP reports through the Linux configfs-tsm interface (Linux 6.7 and later):
 * create an entry directory, write the report data to `inblob`, read the evidence from `outblob` and the
 * TEE from `provider`. The kernel increments `generation` on every write to the entry, so a generation
 * that grew by more than our one write means another writer raced us, and we retry.
 */
export class ConfigfsTsmSource implements EvidenceSource {
  readonly kind = 'configfs-tsm' as const;
  private readonly basePath: string;

  constructor(private readonly options: ConfigfsTsmOptions = {}) {
    this.basePath = options.basePath ?? CONFIGFS_TSM_REPORT_PATH;
  }

  async collect(reportData: Buffer): Promise<CollectedEvidence> {
    if (reportData.length !== 64) throw new CasError('INVALID_ARGUMENT', `report data must be 64 bytes, not ${reportData.length}`);
    const created = this.options.entryName === undefined;
    const entry = join(this.basePath, this.options.entryName ?? `cas-${process.pid}-${randomBytes(6).toString('hex')}`);
    if (created) {
      try {
        await mkdir(entry);
      } catch (error) {
        throw new CasError('UNAVAILABLE', `cannot create the configfs-tsm entry ${entry}: ${(error as Error).message}`, { cause: error });
      }
    }
    try {
      for (let attempt = 1; ; attempt++) {
        const before = await optionalText(join(entry, 'generation'));
        await this.write(join(entry, 'inblob'), reportData);
        const evidence = await this.read(join(entry, 'outblob'));
        const provider = (await this.read(join(entry, 'provider'))).toString('utf8').trim();
        const auxiliary = await optionalBytes(join(entry, 'auxblob'));
        const after = await optionalText(join(entry, 'generation'));
        // Our write increments the generation by exactly one; any other change means another writer.
        if (before !== undefined && Number(after) !== Number(before) + 1) {
          if (attempt < 3) continue;
          throw new CasError('UNAVAILABLE', `configfs-tsm entry ${entry} is being written by another process (generation ${before} -> ${after})`);
        }
        const teeType = PROVIDERS[provider];
        if (teeType === undefined) throw new CasError('UNAVAILABLE', `configfs-tsm provider "${provider}" is not supported; supported: ${Object.keys(PROVIDERS).join(', ')}`);
        if (evidence.length === 0) throw new CasError('UNAVAILABLE', `configfs-tsm entry ${entry} returned empty evidence`);
        return auxiliary === undefined || auxiliary.length === 0 ? { teeType, evidence } : { teeType, evidence, auxiliary };
      }
    } finally {
      if (created) await rmdir(entry).catch(() => undefined);
    }
  }

  private async write(path: string, data: Buffer): Promise<void> {
    try {
      await writeFile(path, data);
    } catch (error) {
      throw new CasError('UNAVAILABLE', `writing ${path} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  private async read(path: string): Promise<Buffer> {
    try {
      return await readFile(path);
    } catch (error) {
      throw new CasError('UNAVAILABLE', `reading ${path} failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

async function optionalBytes(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CasError('UNAVAILABLE', `reading ${path} failed: ${(error as Error).message}`, { cause: error });
  }
}

async function optionalText(path: string): Promise<string | undefined> {
  return (await optionalBytes(path))?.toString('utf8').trim();
}
