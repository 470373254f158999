import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import type { CasDatabase } from '../store/index.js';
import type { CommitChange } from './provisioning.js';

/** Meta name of the owner settings. The database encrypts meta values like every other cell. */
const OWNER_SETTINGS_META = 'cas.owner-settings';

const KEY_HASH = z.string().regex(/^[0-9a-f]{64}$/, 'expected a client key hash of 64 lower-case hex characters');

/**
 * The owner settings document (YAML or JSON). Every level is strict, so a misspelt key is rejected with its
 * path instead of being ignored. A key that is left out takes its default.
 */
export const ownerSettingsSchema = z.strictObject({
  backup: z
    .strictObject({
      /**
       * Whether `cas backup register` accepts simulated platform evidence. A CAS in hardware mode rejects
       * simulated evidence regardless of this setting.
       */
      acceptSimulatedEvidence: z.boolean().optional(),
    })
    .optional(),
  sessions: z
    .strictObject({
      /**
       * Client keys (SHA-256 of the SubjectPublicKeyInfo) that may create top-level sessions, the ones
       * without a `/` in their name. Absent or null allows any authenticated client, and an empty list allows no client.
       */
      topLevelCreators: z.array(KEY_HASH).max(1024).nullable().optional(),
    })
    .optional(),
  audit: z
    .strictObject({
      /**
       * Whether every `GET /v1/sessions/{name}` appends a `session.read` entry (success or denied). A read
       * whose entry cannot be written fails, so no read goes unrecorded.
       */
      recordSessionReads: z.boolean().optional(),
    })
    .optional(),
});

export type OwnerSettingsDocument = z.infer<typeof ownerSettingsSchema>;

/** Effective owner settings: the stored document with every default filled in. */
export interface OwnerSettings {
  backup: { acceptSimulatedEvidence: boolean };
  sessions: { topLevelCreators: string[] | null };
  audit: { recordSessionReads: boolean };
}

export const DEFAULT_OWNER_SETTINGS: OwnerSettings = {
  backup: { acceptSimulatedEvidence: true },
  sessions: { topLevelCreators: null },
  // Session reads are CAS transactions too, so the audit log records them unless the owner opts out.
  audit: { recordSessionReads: true },
};

/** Fills the defaults into a validated document, removing duplicate key hashes and sorting the list. */
export function effectiveOwnerSettings(document: OwnerSettingsDocument): OwnerSettings {
  const creators = document.sessions?.topLevelCreators;
  return {
    backup: { acceptSimulatedEvidence: document.backup?.acceptSimulatedEvidence ?? DEFAULT_OWNER_SETTINGS.backup.acceptSimulatedEvidence },
    sessions: { topLevelCreators: creators === undefined || creators === null ? null : [...new Set(creators)].sort() },
    audit: { recordSessionReads: document.audit?.recordSessionReads ?? DEFAULT_OWNER_SETTINGS.audit.recordSessionReads },
  };
}

/** Validates a parsed settings value. The INVALID_ARGUMENT error names every invalid key by its dotted path. */
export function validateOwnerSettings(value: unknown, source: string): OwnerSettingsDocument {
  const result = ownerSettingsSchema.safeParse(value ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) => {
    const base = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...base, key].join('.'), message: 'unknown setting' }));
    }
    return [{ path: base.length === 0 ? '(document)' : base.join('.'), message: issue.message }];
  });
  return failInvalid(source, problems);
}

/** Parses an owner settings file (YAML, which includes JSON) and validates it. */
export function parseOwnerSettingsText(text: string, source: string): OwnerSettingsDocument {
  const document = parseDocument(text, { uniqueKeys: true });
  if (document.errors.length > 0) {
    return failInvalid(source, document.errors.map((error) => ({ path: '(document)', message: error.message.split('\n')[0]! })));
  }
  return validateOwnerSettings(document.toJS(), source);
}

/** Reads and validates an owner settings file, as `cas settings set` and `--owner-config` do before any request. */
export function readOwnerSettingsFile(path: string): OwnerSettingsDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CasError('INVALID_ARGUMENT', `cannot read the owner settings file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
  return parseOwnerSettingsText(text, path);
}

function failInvalid(source: string, problems: Array<{ path: string; message: string }>): never {
  throw new CasError('INVALID_ARGUMENT', `invalid owner settings in ${source}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, {
    details: { problems },
  });
}

/** Reads the effective owner settings, which are the defaults until the owner sets any. */
export function readOwnerSettings(db: CasDatabase): OwnerSettings {
  const stored = db.getMeta(OWNER_SETTINGS_META);
  if (stored === undefined) return structuredClone(DEFAULT_OWNER_SETTINGS);
  return effectiveOwnerSettings(validateOwnerSettings(JSON.parse(stored.toString('utf8')), `database meta ${OWNER_SETTINGS_META}`));
}

/** Dotted paths of the settings whose effective values differ, in document order. */
export function changedSettingKeys(before: OwnerSettings, after: OwnerSettings): string[] {
  const changed: string[] = [];
  for (const group of Object.keys(after) as Array<keyof OwnerSettings>) {
    const previous = before[group] as Record<string, unknown>;
    const next = after[group] as Record<string, unknown>;
    for (const key of Object.keys(next)) {
      if (JSON.stringify(previous[key]) !== JSON.stringify(next[key])) changed.push(`${group}.${key}`);
    }
  }
  return changed;
}

/**
 * Replaces the owner settings with `document` (keys left out return to their defaults). A change appends
 * `cas.settings.updated`, which lists the changed keys but no values, and is committed with it under the
 * write gate. Setting the same values again changes nothing and appends nothing.
 */
export async function replaceOwnerSettings(
  db: CasDatabase,
  commit: CommitChange,
  document: OwnerSettingsDocument,
  ownerKeyHash: string,
): Promise<{ settings: OwnerSettings; changed: string[] }> {
  const settings = effectiveOwnerSettings(document);
  return db.writeGate.run(async () => {
    const changed = changedSettingKeys(readOwnerSettings(db), settings);
    if (changed.length === 0) return { settings, changed };
    await commit({ event: 'cas.settings.updated', actor: { kind: 'client', keyHash: ownerKeyHash }, outcome: 'success', details: { changed } }, () =>
      db.putMeta(OWNER_SETTINGS_META, Buffer.from(JSON.stringify(settings), 'utf8')),
    );
    return { settings, changed };
  });
}
