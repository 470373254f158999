import { join } from 'node:path';
import ts from 'typescript';
import { repoRoot } from '../../testing/paths.js';

/**
 * Validates Kubernetes objects the way `kubectl apply --validate=strict` does: every field must exist in
 * the API schema, and every value must have the schema's type and format.
 *
 * kubernetes-models 4.5 ships the Kubernetes OpenAPI schemas twice: compiled into validators, which check
 * types, formats and required fields but accept unknown fields, and as TypeScript interfaces generated from
 * the same definitions. This module runs the validators and, for unknown fields, walks each object against
 * the interfaces with the TypeScript type checker: that is the schema with `additionalProperties: false`.
 * Test-only: it loads the TypeScript compiler, a development dependency.
 */
export interface SchemaProblem {
  /** JSON path of the field, for example `spec.template.spec.containers[0].image`. */
  path: string;
  message: string;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

export class StrictSchemaValidator {
  private readonly checker: ts.TypeChecker;
  private readonly types = new Map<string, ts.Type>();

  private constructor(private readonly program: ts.Program, aliases: Map<string, string>) {
    this.checker = program.getTypeChecker();
    const source = program.getSourceFile(VIRTUAL_FILE);
    if (source === undefined) throw new Error('the schema type file was not compiled');
    for (const statement of source.statements) {
      if (!ts.isTypeAliasDeclaration(statement)) continue;
      const key = aliases.get(statement.name.text);
      if (key !== undefined) this.types.set(key, this.checker.getTypeAtLocation(statement.name));
    }
  }

  /** Compiles the kubernetes-models interfaces of the given `apiVersion/kind` pairs (a few seconds). */
  static create(kinds: ReadonlyArray<{ apiVersion: string; kind: string }>): StrictSchemaValidator {
    const aliases = new Map<string, string>();
    const lines: string[] = [];
    kinds.forEach(({ apiVersion, kind }, index) => {
      lines.push(`import type { I${kind} as Imported${index} } from '${modelModule(apiVersion, kind)}';`);
      lines.push(`export type Kind${index} = Imported${index};`);
      aliases.set(`Kind${index}`, typeKey(apiVersion, kind));
    });
    const options: ts.CompilerOptions = {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const text = lines.join('\n');
    const readFile = host.readFile.bind(host);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    host.readFile = (file) => (file === VIRTUAL_FILE ? text : readFile(file));
    host.fileExists = (file) => file === VIRTUAL_FILE || fileExists(file);
    host.getSourceFile = (file, language, ...rest) =>
      file === VIRTUAL_FILE ? ts.createSourceFile(file, text, language, true) : getSourceFile(file, language, ...rest);
    const program = ts.createProgram([VIRTUAL_FILE], options, host);
    const errors = ts.getPreEmitDiagnostics(program);
    if (errors.length > 0) {
      throw new Error(`the kubernetes-models interfaces did not compile: ${ts.flattenDiagnosticMessageText(errors[0]!.messageText, ' ')}`);
    }
    return new StrictSchemaValidator(program, aliases);
  }

  /** Returns every problem of one object; the list is empty when the object is valid. */
  async validate(object: { apiVersion?: unknown; kind?: unknown }): Promise<SchemaProblem[]> {
    const { apiVersion, kind } = object;
    if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
      return [{ path: '', message: 'apiVersion and kind must be strings' }];
    }
    const type = this.types.get(typeKey(apiVersion, kind));
    if (type === undefined) return [{ path: '', message: `no schema loaded for ${apiVersion} ${kind}` }];

    const problems: SchemaProblem[] = [];
    this.checkFields(object, type, '', problems);
    problems.push(...(await runModelValidation(apiVersion, kind, object)));
    return problems;
  }

  private checkFields(value: unknown, declared: ts.Type, path: string, problems: SchemaProblem[]): void {
    if (value === null || typeof value !== 'object') return;
    const type = this.checker.getNonNullableType(declared);

    if (Array.isArray(value)) {
      const element = this.arrayElementType(type);
      if (element === undefined) {
        problems.push({ path, message: `expected ${this.checker.typeToString(type)}, found an array` });
        return;
      }
      value.forEach((item, index) => this.checkFields(item, element, `${path}[${index}]`, problems));
      return;
    }

    const candidates = (type.isUnion() ? type.types : [type]).filter((member) => (member.flags & ts.TypeFlags.Object) !== 0);
    if (candidates.length === 0) {
      problems.push({ path, message: `expected ${this.checker.typeToString(type)}, found an object` });
      return;
    }
    const target = candidates.find((candidate) => Object.keys(value).every((key) => this.fieldType(candidate, key) !== undefined)) ?? candidates[0]!;
    for (const [key, child] of Object.entries(value)) {
      const childPath = path === '' ? key : `${path}.${key}`;
      const childType = this.fieldType(target, key);
      if (childType === undefined) {
        problems.push({ path: childPath, message: `unknown field "${key}" in ${this.checker.typeToString(target)}` });
        continue;
      }
      this.checkFields(child, childType, childPath, problems);
    }
  }

  private fieldType(type: ts.Type, key: string): ts.Type | undefined {
    const property = this.checker.getPropertyOfType(type, key);
    if (property !== undefined) return this.checker.getTypeOfSymbol(property);
    return this.checker.getIndexInfoOfType(type, ts.IndexKind.String)?.type;
  }

  private arrayElementType(type: ts.Type): ts.Type | undefined {
    const arrays = (type.isUnion() ? type.types : [type]).filter((member) => this.checker.isArrayType(member));
    const first = arrays[0];
    if (first === undefined) return undefined;
    return this.checker.getTypeArguments(first as ts.TypeReference)[0];
  }
}

const VIRTUAL_FILE = join(repoRoot(), 'src', 'kubernetes', 'testing', '__schema_types__.ts').replace(/\\/g, '/');

function modelModule(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

function typeKey(apiVersion: string, kind: string): string {
  return `${apiVersion}/${kind}`;
}

/** kubernetes-models' compiled validators: types, formats, enums and required fields. */
async function runModelValidation(apiVersion: string, kind: string, object: unknown): Promise<SchemaProblem[]> {
  const module = (await import(modelModule(apiVersion, kind))) as Record<string, ModelClass | undefined>;
  const Model = module[kind];
  if (Model === undefined) return [{ path: '', message: `kubernetes-models has no ${apiVersion} ${kind}` }];
  try {
    new Model(structuredClone(object)).validate();
    return [];
  } catch (error) {
    const errors = (error as { errors?: Array<{ instancePath?: string; message?: string }> }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      return errors.map((item) => ({ path: (item.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.'), message: item.message ?? 'invalid' }));
    }
    return [{ path: '', message: error instanceof Error ? error.message : String(error) }];
  }
}
