import { CasError } from '../errors/cas-error.js';

export type OutputFormat = 'text' | 'json';

/** Parses `--output`: `text` (default) or `json`. */
export function outputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'text') return 'text';
  if (value === 'json') return 'json';
  throw new CasError('INVALID_ARGUMENT', `invalid --output "${value}"; expected text or json`);
}

/**
 * Prints a command's result: one JSON document on stdout for `--output json`, else `text` on stdout (the
 * value a script captures) and `note` on stderr (context for a human).
 */
export function printResult(format: OutputFormat, json: unknown, text: string | undefined, note?: string): void {
  if (format === 'json') {
    process.stdout.write(JSON.stringify(json, null, 2) + '\n');
    return;
  }
  if (note !== undefined) process.stderr.write(note + '\n');
  if (text !== undefined) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}
