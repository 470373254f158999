import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { constants as osConstants } from 'node:os';
import { CasError } from '../errors/cas-error.js';
import type { ServiceConfiguration } from './cas-client.js';

/** Signals that `cas run` passes on to the service process. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Returns the service's working directory (`pwd`, else the current one); throws if it does not exist. */
export function workingDirectory(configuration: ServiceConfiguration): string {
  const cwd = configuration.pwd ?? process.cwd();
  if (!existsSync(cwd) || !statSync(cwd).isDirectory()) {
    throw new CasError('INVALID_ARGUMENT', `the working directory "${cwd}" of service "${configuration.service}" (pwd in the session) does not exist on this host`);
  }
  return cwd;
}

/**
 * Writes the injection files of a configuration: parent directories are created (0700), each file is
 * written with mode 0600, replacing what was there. Relative paths are resolved against `pwd`.
 *
 * Each file is written to a new file (created exclusively, mode 0600) beside it and then renamed over the
 * path. Writing to the path itself would follow a symbolic link, or reuse a file that another user created
 * there with a wider mode, and so hand the secrets to whoever placed it; a rename replaces the link or
 * file itself, and fails where the directory does not let this user replace it.
 */
export function writeInjectionFiles(configuration: ServiceConfiguration, cwd: string): string[] {
  const written: string[] = [];
  for (const file of configuration.injectionFiles) {
    const path = isAbsolute(file.path) ? file.path : resolve(cwd, file.path);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const temporary = join(dirname(path), `.${basename(path)}.cas-${randomBytes(8).toString('hex')}`);
    try {
      writeFileSync(temporary, file.content, { mode: 0o600, flag: 'wx' });
      renameSync(temporary, path);
    } catch (error) {
      rmSync(temporary, { force: true });
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new CasError('INVALID_ARGUMENT', `cannot write injection file "${path}" of service "${configuration.service}": ${code}`, { cause: error });
    }
    written.push(path);
  }
  return written;
}

/**
 * Returns the argv to run: the session's command, with `@@N` already filled from the host arguments. A
 * service without a command runs the host command given after `--`.
 */
export function commandToRun(configuration: ServiceConfiguration, hostArguments: string[]): string[] {
  if (configuration.command.length > 0) return configuration.command;
  if (hostArguments.length > 0) return hostArguments;
  throw new CasError(
    'INVALID_ARGUMENT',
    `service "${configuration.service}" of session "${configuration.session}" has no command; give one after --, for example: cas run --session ${configuration.session} --service ${configuration.service} -- /path/to/program`,
  );
}

/**
 * Runs the service with exactly the configured environment and inherited stdio, forwards signals to it, and
 * resolves with the exit code `cas run` should use: the child's code, or 128 + the signal number when a
 * signal ended it. Node cannot replace its own process image (no exec), so `cas run` stays the parent.
 */
export async function runService(argv: string[], configuration: ServiceConfiguration): Promise<number> {
  const cwd = workingDirectory(configuration);
  const [program, ...args] = argv;
  if (program === undefined) throw new CasError('INVALID_ARGUMENT', 'no command to run');

  const child = spawn(program, args, { cwd, env: configuration.environment, stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);

  try {
    return await new Promise<number>((resolvePromise, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(new CasError('INVALID_ARGUMENT', `cannot start "${program}": ${error.code ?? error.message}`, { cause: error }));
      });
      child.once('exit', (code, signal) => {
        if (code !== null) resolvePromise(code);
        else resolvePromise(128 + (signal === null ? 0 : (osConstants.signals[signal] ?? 0)));
      });
    });
  } finally {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
  }
}
