import { CasError } from '../errors/cas-error.js';
import type { SecretKind } from './types.js';

/**
 * Secret placeholders: `$$SCONE::NAME$$`, `$$SCONE::NAME:FORMAT$$`, and the legacy dot form
 * `$$SCONE::NAME.crt$$` / `.key` / `.chain` that older session files use. The session parser checks every
 * placeholder against the declared secrets; the secrets module substitutes them.
 */
export const PLACEHOLDER_FORMATS = ['hex', 'base64', 'pem', 'crt', 'chain', 'privatekey', 'key', 'publickey'] as const;
export type PlaceholderFormat = (typeof PLACEHOLDER_FORMATS)[number];

/** Legacy dot suffixes and the format each one means. */
const LEGACY_SUFFIXES: Record<string, PlaceholderFormat> = { crt: 'crt', key: 'key', chain: 'chain' };

/** Formats each secret kind accepts; the first column of docs/session-language.md lists the same table. */
export const FORMATS_BY_KIND: Record<SecretKind, readonly PlaceholderFormat[]> = {
  ascii: ['hex', 'base64'],
  binary: ['hex', 'base64'],
  'private-key': ['pem', 'privatekey', 'key', 'publickey'],
  x509: ['pem', 'crt', 'chain', 'privatekey', 'key', 'publickey'],
  'x509-ca': ['pem', 'crt', 'chain', 'privatekey', 'key', 'publickey'],
};

/** A placeholder as written, before its name is resolved against the session's secrets. */
export interface PlaceholderToken {
  /** The whole placeholder, `$$SCONE::name:format$$`. */
  text: string;
  /** Everything between `$$SCONE::` and the closing `$$`. */
  body: string;
  start: number;
  end: number;
}

/** A placeholder whose name names a secret of the session. */
export interface PlaceholderReference {
  text: string;
  secret: string;
  /** Absent means the default format of the secret's kind. */
  format?: PlaceholderFormat;
}

const PLACEHOLDER_PATTERN = /\$\$SCONE::(.*?)\$\$/gs;
const PLACEHOLDER_START = '$$SCONE::';
const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Finds every `$$SCONE::...$$` in `text`; an opening `$$SCONE::` without its closing `$$` is an error. */
export function findPlaceholders(text: string, where: string): PlaceholderToken[] {
  const tokens: PlaceholderToken[] = [];
  let coveredUntil = 0;
  for (const match of text.matchAll(PLACEHOLDER_PATTERN)) {
    const start = match.index;
    tokens.push({ text: match[0], body: match[1] ?? '', start, end: start + match[0].length });
    coveredUntil = start + match[0].length;
  }
  const unclosed = text.indexOf(PLACEHOLDER_START, coveredUntil);
  if (unclosed >= 0) {
    throw new CasError(
      'SECRET_REFERENCE_INVALID',
      `${where}: placeholder starting at character ${unclosed} has no closing "$$"; write $$SCONE::NAME$$`,
      { details: { path: where, found: text.slice(unclosed, unclosed + 40) } },
    );
  }
  return tokens;
}

/**
 * Resolves a placeholder body to a secret name and format. `isSecret` tells whether a name is a secret of
 * the session (declared or imported); an exact name wins over the legacy dot suffix reading.
 */
export function resolvePlaceholder(
  token: PlaceholderToken,
  isSecret: (name: string) => boolean,
  where: string,
): PlaceholderReference {
  const colon = token.body.indexOf(':');
  let name = colon >= 0 ? token.body.slice(0, colon) : token.body;
  let format: string | undefined = colon >= 0 ? token.body.slice(colon + 1) : undefined;

  if (!NAME_PATTERN.test(name)) {
    throw referenceError(where, token.text, `"${name}" is not a valid secret name`);
  }
  if (format === undefined && !isSecret(name)) {
    const dot = name.lastIndexOf('.');
    const suffixText = name.slice(dot + 1);
    const suffix = dot > 0 && Object.hasOwn(LEGACY_SUFFIXES, suffixText) ? LEGACY_SUFFIXES[suffixText] : undefined;
    if (suffix !== undefined && isSecret(name.slice(0, dot))) {
      format = suffix;
      name = name.slice(0, dot);
    }
  }
  if (!isSecret(name)) {
    throw referenceError(where, token.text, `no secret named "${name}" is declared or imported`);
  }
  if (format !== undefined && !(PLACEHOLDER_FORMATS as readonly string[]).includes(format)) {
    throw referenceError(
      where,
      token.text,
      `unknown format "${format}"; use one of ${PLACEHOLDER_FORMATS.join(', ')}, or none for the default`,
    );
  }
  return format === undefined
    ? { text: token.text, secret: name }
    : { text: token.text, secret: name, format: format as PlaceholderFormat };
}

/** Throws unless `kind` accepts `format`. */
export function checkFormatForKind(reference: PlaceholderReference, kind: SecretKind, where: string): void {
  if (reference.format === undefined) return;
  const allowed = FORMATS_BY_KIND[kind];
  if (!allowed.includes(reference.format)) {
    throw referenceError(
      where,
      reference.text,
      `format "${reference.format}" does not apply to ${kind} secret "${reference.secret}"; use one of ${allowed.join(', ')}`,
    );
  }
}

function referenceError(where: string, placeholder: string, problem: string): CasError {
  return new CasError('SECRET_REFERENCE_INVALID', `${where}: invalid placeholder ${placeholder}: ${problem}`, {
    details: { path: where, found: placeholder },
  });
}
