import { readFileSync } from 'node:fs';
import { repoRoot } from '../testing/paths.js';

/** The version in the package.json of this installation, or 0.0.0 when that file cannot be read. */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(`${repoRoot()}/package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
