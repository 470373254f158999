import { CasError } from '../errors/cas-error.js';
import { sessionHash } from '../policy/session-hash.js';
import type { SecretDeclaration, Session } from '../policy/types.js';
import { ownValue } from './generate.js';
import type { ImportContext, SecretImporter, StoredSecret, StoredSecrets } from './types.js';

/** A stored session as the import resolver needs it. */
export interface ExportingSession {
  session: Session;
  secrets: StoredSecrets;
  /** The session's hash; computed from `session` when absent. */
  hash?: string;
}

/**
 * Builds the importer that `generateSecrets` and `resolveImports` call. It admits an import only when the
 * exporter's declaration lists the importing session (by name, or a namespace above it) and any
 * `session_hash` pin matches. `export_public` admits every session to the public part. A secret that the
 * exporter imported itself is followed to its origin, and a cycle is rejected with the chain in the message.
 */
export function createImportResolver(lookup: (name: string) => ExportingSession | undefined): SecretImporter {
  const resolve = (
    sessionName: string,
    secretName: string,
    importingSession: string,
    context: ImportContext | undefined,
    chain: string[],
  ): StoredSecret => {
    const link = `${sessionName}#${secretName}`;
    if (chain.includes(link)) {
      const cycle = [...chain.slice(chain.indexOf(link)), link].join(' -> ');
      throw importError(`cyclic import: ${cycle}`, { cycle });
    }
    const path = [...chain, link];

    const exporter = lookup(sessionName);
    if (exporter === undefined) {
      throw importError(`session "${importingSession}" imports from session "${sessionName}", which does not exist`, { session: sessionName });
    }
    const exporterHash = exporter.hash ?? sessionHash(exporter.session);
    if (context?.exporterSessionHash !== undefined && context.exporterSessionHash !== exporterHash) {
      throw importError(
        `session "${importingSession}" pins session "${sessionName}" to hash ${context.exporterSessionHash}, but its current hash is ${exporterHash}`,
        { session: sessionName, expected: context.exporterSessionHash, found: exporterHash },
      );
    }

    const declaration = exporter.session.secrets.find((s) => s.name === secretName);
    if (declaration === undefined) {
      throw importError(`session "${sessionName}" has no secret "${secretName}"`, { session: sessionName, secret: secretName });
    }

    const full = exportAllows(declaration, importingSession, context?.importingSessionHash);
    if (!full && !declaration.exportPublic) {
      throw importError(
        `session "${sessionName}" does not export secret "${secretName}" to session "${importingSession}"; add it to the secret's export list`,
        { session: sessionName, secret: secretName, importingSession },
      );
    }

    let value: StoredSecret | undefined;
    if (declaration.import !== undefined) {
      const nextContext: ImportContext = { importingSessionHash: exporterHash };
      if (declaration.import.sessionHash !== undefined) nextContext.exporterSessionHash = declaration.import.sessionHash;
      value = resolve(declaration.import.session, declaration.import.secret, sessionName, nextContext, path);
    } else {
      value = ownValue(exporter.secrets.secrets, secretName);
    }
    if (value === undefined) {
      throw importError(`session "${sessionName}" has no stored value for secret "${secretName}"`, { session: sessionName, secret: secretName });
    }
    return full ? value : publicPart(value, sessionName, secretName);
  };

  return (sessionName, secretName, importingSession, context) => {
    const start = context?.importingSecret === undefined ? [] : [`${importingSession}#${context.importingSecret}`];
    return resolve(sessionName, secretName, importingSession, context, start);
  };
}

/** Checks whether `declaration.export` admits `importingSession` (with its hash, when a target pins one). */
export function exportAllows(declaration: SecretDeclaration, importingSession: string, importingSessionHash: string | undefined): boolean {
  return declaration.export.some((target) => {
    const nameMatches =
      'session' in target ? target.session === importingSession : importingSession.startsWith(`${target.namespace}/`);
    if (!nameMatches) return false;
    return target.sessionHash === undefined || target.sessionHash === importingSessionHash;
  });
}

function publicPart(value: StoredSecret, sessionName: string, secretName: string): StoredSecret {
  if (value.kind === 'ascii' || value.kind === 'binary') {
    throw importError(`secret "${secretName}" of session "${sessionName}" has no public part to export`, { session: sessionName, secret: secretName });
  }
  const { privateKeyPem: _dropped, ...rest } = value;
  return rest;
}

function importError(message: string, details: Record<string, unknown>): CasError {
  return new CasError('SECRET_REFERENCE_INVALID', message, { details });
}
