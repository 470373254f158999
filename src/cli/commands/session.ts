import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { isMap, parseDocument } from 'yaml';
import { connectPinned } from '../../client/connect.js';
import { outputFormat, printResult } from '../../client/output.js';
import { CasError } from '../../errors/cas-error.js';
import { substituteVariables } from '../../policy/index.js';
import { withClientOptions, type ClientFlags } from '../client-options.js';

/** `cas session create|update|read|list|delete`. */
export function register(program: Command): void {
  const session = program.command('session').description('create, update, read, list and delete sessions');

  sessionFileCommand(session, 'create <file>', 'upload a new session; prints its hash')
    .action(async (file: string, flags: ClientFlags & { env: string[] }) => {
      const format = outputFormat(flags.output);
      const text = readSessionFile(file, flags.env);
      const { client } = await connectPinned(flags.cas);
      const created = await client.createSession(text);
      printResult(format, created, created.hash, `created session ${created.name}`);
    });

  sessionFileCommand(session, 'update <file>', 'upload a new version of a session; fills in predecessor with the current hash unless the file sets it')
    .action(async (file: string, flags: ClientFlags & { env: string[] }) => {
      const format = outputFormat(flags.output);
      const text = readSessionFile(file, flags.env);
      const document = parseDocument(text);
      const yamlError = document.errors[0];
      if (yamlError !== undefined) throw new CasError('SESSION_INVALID', `${file}: ${yamlError.message}`);
      if (!isMap(document.contents)) throw new CasError('SESSION_INVALID', `${file}: a session is a YAML mapping with at least name and version`);
      const name = document.get('name');
      if (typeof name !== 'string' || name === '') {
        throw new CasError('INVALID_ARGUMENT', `${file} has no session name; a session needs name: NAME`);
      }
      const { client } = await connectPinned(flags.cas);
      let upload = text;
      if (!document.has('predecessor')) {
        const current = await client.readSession(name);
        document.set('predecessor', current.hash);
        upload = document.toString();
      }
      const updated = await client.updateSession(name, upload);
      printResult(format, updated, updated.hash, `updated session ${updated.name}`);
    });

  withClientOptions(session.command('read <name>').description('print a session (secret values withheld)'))
    .action(async (name: string, flags: ClientFlags) => {
      const format = outputFormat(flags.output);
      const { client } = await connectPinned(flags.cas);
      const view = await client.readSession(name);
      printResult(format, view, view.session, `session ${view.name}, hash ${view.hash}`);
    });

  withClientOptions(session.command('list').description('list the sessions this client may read'))
    .action(async (flags: ClientFlags) => {
      const format = outputFormat(flags.output);
      const { client } = await connectPinned(flags.cas);
      const sessions = await client.listSessions();
      printResult(format, { sessions }, sessions.map((s) => `${s.name}\t${s.hash}`).join('\n'));
    });

  withClientOptions(session.command('delete <name>').description('delete a session (needs update permission)'))
    .action(async (name: string, flags: ClientFlags) => {
      const format = outputFormat(flags.output);
      const { client } = await connectPinned(flags.cas);
      await client.deleteSession(name);
      printResult(format, { name, deleted: true }, undefined, `deleted session ${name}`);
    });
}

/** Creates a subcommand that uploads a session file, with `-e KEY=VALUE` (repeatable) and then the client options. */
function sessionFileCommand(session: Command, nameAndArgs: string, description: string): Command {
  const command = session
    .command(nameAndArgs)
    .description(description)
    .option('-e, --env <KEY=VALUE>', 'replace the template variable $KEY or ${KEY} in the file before upload (repeatable)', collect, []);
  return withClientOptions(command);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Reads a session file and substitutes only the variables named with -e; `$$SCONE::...$$` stays untouched. */
function readSessionFile(file: string, assignments: string[]): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new CasError('INVALID_ARGUMENT', `cannot read session file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
  if (assignments.length === 0) return text;
  const vars: Record<string, string> = {};
  for (const assignment of assignments) {
    const separator = assignment.indexOf('=');
    if (separator <= 0) throw new CasError('INVALID_ARGUMENT', `invalid -e "${assignment}"; expected KEY=VALUE`);
    vars[assignment.slice(0, separator)] = assignment.slice(separator + 1);
  }
  return substituteVariables(text, vars);
}
