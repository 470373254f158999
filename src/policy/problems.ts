import { CasError } from '../errors/cas-error.js';
import { formatPath, sessionInvalid, type KeyPath, type SessionProblem, type SessionSource } from './source.js';

/**
 * Collects the problems of one session so that a single error can report several of them. Problems
 * of structure and value become SESSION_INVALID; references to unknown or unsuitable secrets become
 * SECRET_REFERENCE_INVALID, reported only when the session has no SESSION_INVALID problem.
 */
export class Problems {
  readonly invalid: SessionProblem[] = [];
  readonly references: SessionProblem[] = [];

  constructor(private readonly source: SessionSource) {}

  add(path: KeyPath, message: string, extra: { expected?: string; found?: unknown } = {}): void {
    this.invalid.push(this.problem(path, message, extra));
  }

  addReference(path: KeyPath, message: string, extra: { expected?: string; found?: unknown } = {}): void {
    this.references.push(this.problem(path, message, extra));
  }

  throwIfAny(): void {
    if (this.invalid.length > 0) throw sessionInvalid(this.invalid);
    const first = this.references[0];
    if (first === undefined) return;

    const shown = this.references.slice(0, 3).map((p) => p.message);
    const rest = this.references.length - shown.length;
    const details: Record<string, unknown> = { path: first.path };
    if (first.expected !== undefined) details['expected'] = first.expected;
    if (first.found !== undefined) details['found'] = first.found;
    if (first.line !== undefined) details['line'] = first.line;
    if (first.column !== undefined) details['column'] = first.column;
    if (this.references.length > 1) details['problems'] = this.references;
    throw new CasError(
      'SECRET_REFERENCE_INVALID',
      `invalid secret reference: ${shown.join('; ')}${rest > 0 ? `; and ${rest} more` : ''}`,
      { details },
    );
  }

  private problem(path: KeyPath, message: string, extra: { expected?: string; found?: unknown }): SessionProblem {
    const problem: SessionProblem = { path: formatPath(path), message: `${formatPath(path)}: ${message}` };
    if (extra.expected !== undefined) problem.expected = extra.expected;
    if (extra.found !== undefined) problem.found = extra.found;
    const position = this.source.locate(path);
    if (position !== undefined) {
      problem.line = position.line;
      problem.column = position.column;
    }
    return problem;
  }
}
