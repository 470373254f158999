import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CasError } from '../../errors/cas-error.js';
import { formatCollateralFile, parseCollateralFile, type IntelCollateral } from '../intel/collateral.js';

/** Where the collateral cache keeps copies that outlive the process. */
export interface CollateralStore {
  load(id: string): Promise<IntelCollateral | undefined>;
  save(id: string, collateral: IntelCollateral): Promise<void>;
}

/**
 * Stores collateral as one JSON file per cache key (in the format of `cas quote verify --collateral`), so a
 * restarted CAS can keep serving while PCS is unreachable. The files contain only public, signed data,
 * which the verifier checks again on every use.
 */
export class FileCollateralStore implements CollateralStore {
  constructor(private readonly directory: string) {}

  async load(id: string): Promise<IntelCollateral | undefined> {
    let text: string;
    try {
      text = await readFile(this.path(id), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CasError('COLLATERAL_UNAVAILABLE', `reading cached collateral ${this.path(id)} failed: ${(error as Error).message}`, { cause: error });
    }
    return parseCollateralFile(text);
  }

  async save(id: string, collateral: IntelCollateral): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    // Write a temporary file and rename it, so a crash never leaves a half-written copy.
    const temporary = `${this.path(id)}.${process.pid}.tmp`;
    await writeFile(temporary, formatCollateralFile(collateral));
    await rename(temporary, this.path(id));
  }

  private path(id: string): string {
    return join(this.directory, `${id.replace(/[^A-Za-z0-9]+/g, '-')}.json`);
  }
}
