import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { CasError } from '../errors/cas-error.js';

export type KeyPath = (string | number)[];

/** Problem details of a SESSION_INVALID error; `path` uses `services[0].environment.KEY` notation. */
export interface SessionProblem {
  path: string;
  message: string;
  expected?: string;
  found?: unknown;
  line?: number;
  column?: number;
}

/** A parsed YAML document with its source positions, so that validation errors can name a line. */
export interface SessionSource {
  data: unknown;
  locate(path: KeyPath, key?: boolean): { line: number; column: number } | undefined;
}

/** Formats a key path as `services[0].environment.KEY`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(document)' : out;
}

/** Builds the SESSION_INVALID error of one or more problems; the message lists up to three of them. */
export function sessionInvalid(problems: SessionProblem[]): CasError {
  const first = problems[0] as SessionProblem;
  const shown = problems.slice(0, 3).map((p) => withPosition(p));
  const rest = problems.length - shown.length;
  const message = shown.join('; ') + (rest > 0 ? `; and ${rest} more problem${rest === 1 ? '' : 's'}` : '');
  const details: Record<string, unknown> = { path: first.path };
  if (first.expected !== undefined) details['expected'] = first.expected;
  if (first.found !== undefined) details['found'] = first.found;
  if (first.line !== undefined) details['line'] = first.line;
  if (first.column !== undefined) details['column'] = first.column;
  if (problems.length > 1) details['problems'] = problems;
  return new CasError('SESSION_INVALID', `invalid session: ${message}`, { details });
}

function withPosition(problem: SessionProblem): string {
  const at = problem.line === undefined ? '' : ` (line ${problem.line}, column ${problem.column})`;
  return `${problem.message}${at}`;
}

/**
 * Parses YAML text into plain data. Syntax errors become SESSION_INVALID with line and column.
 * Plain (unquoted) scalars in the string-valued fields listed in `keepAsWritten` keep their source
 * text, so `PLAIN: 007` stays "007" and `version: 0.3` stays "0.3" instead of turning into numbers.
 */
export function loadYaml(text: string): SessionSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });

  const error = doc.errors[0];
  if (error !== undefined) {
    const position = error.linePos?.[0] ?? lineCounter.linePos(error.pos[0]);
    const line = position.line;
    const column = position.col;
    const reason = error.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? error.message;
    throw new CasError(
      'SESSION_INVALID',
      `invalid YAML at line ${line}, column ${column}: ${reason}`,
      { details: { path: '(document)', expected: 'valid YAML', found: error.code, line, column } },
    );
  }

  rejectPrototypeKeys(doc, lineCounter);
  keepPlainScalarsAsWritten(doc);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (error) {
    // yaml throws a ReferenceError when aliases expand too far (a "billion laughs" document).
    if (!(error instanceof ReferenceError)) throw error;
    throw new CasError('SESSION_INVALID', `invalid session: the YAML aliases expand too far (${error.message}); write the values out instead`, {
      details: { path: '(document)', expected: 'YAML whose aliases expand to at most 100 nodes', found: 'excessive aliases' },
    });
  }

  return {
    data,
    locate(path, key = false) {
      const node = key ? findKeyNode(doc, path) : (doc.getIn(path, true) as Node | undefined);
      const offset = node?.range?.[0];
      if (offset === undefined) return undefined;
      const { line, col } = lineCounter.linePos(offset);
      return { line, column: col };
    },
  };
}

/** Rejects a `__proto__` key anywhere, because converting it to a JavaScript object would drop or misread it. */
function rejectPrototypeKeys(doc: Document, lineCounter: LineCounter): void {
  visit(doc, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || pair.key.value !== '__proto__') return;
      const { line, col } = lineCounter.linePos(pair.key.range?.[0] ?? 0);
      throw new CasError('SESSION_INVALID', `invalid session: the key "__proto__" is not allowed (line ${line}, column ${col})`, {
        details: { path: '(document)', expected: 'a key of the session language', found: '__proto__', line, column: col },
      });
    },
  });
}

function findKeyNode(doc: Document, path: KeyPath): Node | undefined {
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  if (!isMap(parent)) return undefined;
  const keyName = path[path.length - 1];
  for (const item of parent.items) {
    if (isPair(item) && isScalar(item.key) && item.key.value === keyName) return item.key;
  }
  return undefined;
}

/** Fields whose value is always text; a plain scalar there keeps its source spelling. */
function keepPlainScalarsAsWritten(doc: Document): void {
  const root = doc.contents;
  if (!isMap(root)) return;

  asText(root.get('version', true), false);
  const services = root.get('services', true);
  if (isSeq(services)) {
    for (const service of services.items) {
      if (!isMap(service)) continue;
      asText(service.get('command', true), false);
      asText(service.get('pwd', true), false);
      const environment = service.get('environment', true);
      if (!isMap(environment)) continue;
      for (const item of environment.items) {
        if (isPair(item)) asText(item.value, true);
      }
    }
  }
  const secrets = root.get('secrets', true);
  if (isSeq(secrets)) {
    for (const secret of secrets.items) {
      if (isMap(secret)) asText(secret.get('value', true), false);
    }
  }
  const images = root.get('images', true);
  if (isSeq(images)) {
    for (const image of images.items) {
      if (!isMap(image)) continue;
      const files = image.get('injection_files', true);
      if (!isSeq(files)) continue;
      for (const file of files.items) {
        if (isMap(file)) asText(file.get('content', true), true);
      }
    }
  }
}

function asText(node: unknown, nullAsEmpty: boolean): void {
  if (!isScalar(node) || typeof node.value === 'string') return;
  if (node.value === null) {
    if (nullAsEmpty) node.value = '';
    return;
  }
  if (node.type === 'PLAIN' && typeof node.source === 'string') node.value = node.source;
}
