import type { z } from 'zod';
import { UNRENDERED_TEMPLATE } from './schema.js';
import { formatPath, type KeyPath, type SessionProblem, type SessionSource } from './source.js';

type Issue = z.core.$ZodIssue;

/** Converts zod issues into problems that name the key path, the expected value and the value found. */
export function problemsFromIssues(issues: readonly Issue[], source: SessionSource): SessionProblem[] {
  const problems: SessionProblem[] = [];
  const seen = new Set<string>();
  for (const issue of issues.flatMap((i) => flattenUnion(i, []))) {
    for (const problem of problemsFromIssue(issue, source)) {
      if (seen.has(problem.path)) continue;
      seen.add(problem.path);
      problems.push(problem);
    }
  }
  return problems;
}

/**
 * Replaces a failed "one or many" union by the issues of the branch that got furthest into the value,
 * so that a bad field inside a list entry is reported at its own path and not as "invalid union".
 */
function flattenUnion(issue: Issue, prefix: PropertyKey[]): Issue[] {
  const path = [...prefix, ...issue.path];
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [{ ...issue, path }];

  let best: Issue[] | undefined;
  let bestDepth = 0;
  for (const branch of issue.errors) {
    const depth = Math.max(0, ...branch.map((b) => b.path.length));
    if (depth > bestDepth) {
      best = branch;
      bestDepth = depth;
    }
  }
  if (best === undefined) return [{ ...issue, path }];
  return best.flatMap((inner) => flattenUnion(inner, path));
}

function problemsFromIssue(issue: Issue, source: SessionSource): SessionProblem[] {
  const path = issue.path as KeyPath;

  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const keyPath = [...path, key];
      return locate(
        {
          path: formatPath(keyPath),
          message: `unknown key "${key}" at ${formatPath(path)}; remove it or correct its spelling`,
          expected: 'a key of the session language',
          found: key,
        },
        source,
        keyPath,
        true,
      );
    });
  }

  const found = valueAt(source.data, path);
  const where = formatPath(path);

  if (issue.code === 'custom' && issue.message === UNRENDERED_TEMPLATE) {
    const variable = String((issue.params as { variable?: unknown } | undefined)?.variable ?? '');
    return [
      locate(
        {
          path: where,
          message: `${where}: ${JSON.stringify(found)} contains the unrendered template variable ${variable}; render the template or pass -e NAME=VALUE to cas session create`,
          expected: 'a value without template variables',
          found,
        },
        source,
        path,
      ),
    ];
  }

  const expected = issue.message.replace(/^Invalid input: /, '').replace(/^expected /, '');
  if (found === undefined && parentExists(source.data, path)) {
    return [locate({ path: where, message: `${where} is missing; expected ${expected}`, expected }, source, path.slice(0, -1))];
  }
  const shown = displayValue(path, found);
  return [
    locate(
      { path: where, message: `${where}: invalid value ${shown}; expected ${expected}`, expected, found: shown },
      source,
      path,
    ),
  ];
}

function locate(problem: SessionProblem, source: SessionSource, path: KeyPath, key = false): SessionProblem {
  const position = source.locate(path, key);
  if (position !== undefined) {
    problem.line = position.line;
    problem.column = position.column;
  }
  return problem;
}

/** Formats the value at `path` for an error message; secret values are replaced by a notice. */
export function displayValue(path: KeyPath, value: unknown): string {
  if (path[0] === 'secrets' && path[2] === 'value') return '(secret value not shown)';
  if (value === undefined) return 'undefined';
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

export function valueAt(data: unknown, path: KeyPath): unknown {
  let current = data;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[part];
  }
  return current;
}

function parentExists(data: unknown, path: KeyPath): boolean {
  if (path.length === 0) return false;
  const parent = valueAt(data, path.slice(0, -1));
  return parent !== null && typeof parent === 'object' && !Array.isArray(parent);
}
