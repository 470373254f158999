import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest parent of this file that has package.json (works from src/ and dist/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

/** The shared samples folder beside the clone (`../shared`), or CAS_SHARED_DIR when set. */
export function sharedDir(): string {
  return process.env['CAS_SHARED_DIR'] ?? resolve(repoRoot(), '..', 'shared');
}

/**
 * The built `cas` CLI entry point that tests run as a subprocess: the main.js compiled into the same output
 * directory as this file, so a build into another --outDir tests its own CLI.
 */
export function casCliPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
}
