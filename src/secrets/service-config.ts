import { CasError } from '../errors/cas-error.js';
import { HOST_ENVIRONMENT_PREFIX } from '../policy/normalise-services.js';
import { findPlaceholders, resolvePlaceholder } from '../policy/placeholders.js';
import type { Session } from '../policy/types.js';
import { formatSecret } from './formats.js';
import type { StoredSecret, StoredSecrets } from './types.js';

export interface ServiceConfigRequest {
  session: Session;
  serviceName: string;
  secrets: StoredSecrets;
  /** Current values of imported secrets (from `resolveImports`); the copies in `secrets.imports` otherwise. */
  importedSecrets?: Record<string, StoredSecret>;
  /** Arguments given on the host after the program name; `@@1` is the first. Untrusted. */
  hostArgs: string[];
  /** The host's environment; read only for keys written `\@\@NAME`. Untrusted. */
  hostEnv: Record<string, string | undefined>;
}

export interface ServiceConfig {
  command: string[];
  environment: Record<string, string>;
  injectionFiles: { path: string; content: string }[];
  pwd?: string;
}

const HOST_ARGUMENT = /@@([1-9][0-9]*)/g;

/**
 * Builds the configuration a service receives after attestation: placeholders in the command,
 * environment values and injection files replaced by secret values, `@@N` in the command replaced by the
 * N-th host argument, and `\@\@NAME` environment keys filled from the host environment.
 *
 * Host arguments and environment come from the untrusted host: they are inserted as plain text in one
 * pass, after the command was split into argv, so a host value never becomes a placeholder, a second
 * argument or a secret. Throws SERVICE_NOT_FOUND for an unknown service, INVALID_ARGUMENT for a missing
 * host argument, SECRET_REFERENCE_INVALID for a placeholder without a value.
 */
export function resolveServiceConfig(request: ServiceConfigRequest): ServiceConfig {
  const { session, serviceName } = request;
  const service = session.services.find((s) => s.name === serviceName);
  if (service === undefined) {
    throw new CasError('SERVICE_NOT_FOUND', `session "${session.name}" has no service "${serviceName}"`, {
      details: { session: session.name, service: serviceName },
    });
  }

  const values: Record<string, StoredSecret> = {
    ...request.secrets.imports,
    ...(request.importedSecrets ?? {}),
    ...request.secrets.secrets,
  };
  const substitute = (text: string, where: string, hostArguments: boolean): string =>
    substituteText(text, where, values, hostArguments ? request.hostArgs : undefined);

  const command = service.command.map((word, index) => substitute(word, `services.${serviceName}.command[${index}]`, true));

  const entries: [string, string][] = [];
  for (const [key, value] of Object.entries(service.environment)) {
    if (key.startsWith(HOST_ENVIRONMENT_PREFIX)) {
      const name = key.slice(HOST_ENVIRONMENT_PREFIX.length);
      const fromHost = Object.hasOwn(request.hostEnv, name) ? request.hostEnv[name] : undefined;
      entries.push([name, typeof fromHost === 'string' ? fromHost : value]);
    } else {
      entries.push([key, substitute(value, `services.${serviceName}.environment.${key}`, false)]);
    }
  }
  const environment = Object.fromEntries(entries);

  const image = service.imageName === undefined ? undefined : session.images.find((i) => i.name === service.imageName);
  const injectionFiles = (image?.injectionFiles ?? []).map((file) => ({
    path: file.path,
    content: substitute(file.content, `images.${image?.name}.injection_files.${file.path}`, false),
  }));

  const config: ServiceConfig = { command, environment, injectionFiles };
  if (service.pwd !== undefined) config.pwd = service.pwd;
  return config;
}

/** Replaces placeholders (and `@@N` when `hostArgs` is given) in one left-to-right pass. */
function substituteText(text: string, where: string, values: Record<string, StoredSecret>, hostArgs: string[] | undefined): string {
  const tokens = findPlaceholders(text, where);
  let out = '';
  let last = 0;
  const plain = (segment: string): string =>
    hostArgs === undefined
      ? segment
      : segment.replace(HOST_ARGUMENT, (_match, digits: string) => {
          const index = Number.parseInt(digits, 10);
          const argument = hostArgs[index - 1];
          if (argument === undefined) {
            throw new CasError('INVALID_ARGUMENT', `${where} uses @@${index}, but the host gave ${hostArgs.length} argument${hostArgs.length === 1 ? '' : 's'}`, {
              details: { path: where, expected: index, found: hostArgs.length },
            });
          }
          return argument;
        });

  for (const token of tokens) {
    out += plain(text.slice(last, token.start));
    const reference = resolvePlaceholder(token, (name) => Object.hasOwn(values, name), where);
    out += formatSecret(values[reference.secret] as StoredSecret, reference.format, reference.secret);
    last = token.end;
  }
  return out + plain(text.slice(last));
}
