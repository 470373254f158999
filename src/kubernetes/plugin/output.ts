import { stringify } from 'yaml';
import { CasError } from '../../errors/cas-error.js';
import type { KubeObject } from '../manifests/index.js';

export const OUTPUT_FORMATS = ['yaml', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(text: string | undefined): OutputFormat | undefined {
  if (text === undefined) return undefined;
  if ((OUTPUT_FORMATS as readonly string[]).includes(text)) return text as OutputFormat;
  throw new CasError('INVALID_ARGUMENT', `invalid -o/--output "${text}": expected yaml or json`);
}

/** Objects as kubectl prints them: YAML documents separated by `---`, or one JSON `List`. */
export function formatObjects(objects: KubeObject[], format: OutputFormat): string {
  if (format === 'json') return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }, null, 2) + '\n';
  return objects.map((object) => stringify(object, { lineWidth: 0 })).join('---\n');
}

/** Formats a result document (not Kubernetes objects) in the chosen format. */
export function formatDocument(document: unknown, format: OutputFormat): string {
  return format === 'json' ? JSON.stringify(document, null, 2) + '\n' : stringify(document, { lineWidth: 0 });
}
