import { CasError } from '../../errors/cas-error.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a kubectl duration (`300s`, `5m`, `1h30m`, `1.5m`, `500ms`) into milliseconds. */
export function parseDuration(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  const consumed = parts.map((part) => part[0]).join('');
  if (parts.length === 0 || consumed !== text) {
    throw new CasError('INVALID_ARGUMENT', `invalid duration "${text}": expected a number with a unit, such as 300s, 5m or 1h30m`);
  }
  let total = 0;
  for (const part of parts) total += Number(part[1]) * UNIT_MS[part[2]!]!;
  if (total <= 0) throw new CasError('INVALID_ARGUMENT', `invalid duration "${text}": must be greater than zero`);
  return Math.round(total);
}
