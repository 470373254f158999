import { CasError, isCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { isAllowed, parentNamespaces } from '../policy/access.js';
import { parseSession, renderSessionForRead, sessionHash } from '../policy/index.js';
import type { Session } from '../policy/types.js';
import { createImportResolver, generateSecrets, resolveImports, type GeneratedSecrets } from '../secrets/index.js';
import type { AuditEventInput } from '../audit/index.js';
import type { CasDatabase, SessionRecord } from '../store/index.js';
import type { ClientKey } from './client-identity.js';
import type { GroupCommit, StagedChange } from './group-commit.js';
import { readOwnerSettings } from './owner-settings.js';
import type { CommitChange } from './provisioning.js';

/** A stored session with its parsed form. */
export interface StoredSession {
  record: SessionRecord;
  session: Session;
  secrets: GeneratedSecrets;
}

export interface SessionSummary {
  name: string;
  hash: string;
}

/** A session change staged for the group commit; `record` is null for a delete. */
interface StagedSession {
  record: SessionRecord | null;
}

/**
 * Session create, update, read, list and delete with access-policy checks. Every change is checked and
 * staged as one writer, against the committed sessions and the changes staged before it, so a stale
 * predecessor or a taken name is always detected. The audit entry and the database commit then complete
 * outside the write gate, in a group commit shared with concurrent changes. The change is acknowledged only
 * after both are durable. Reads and configuration releases see committed sessions only.
 */
export class SessionService {
  /** Changes staged and not yet committed or rejected, by session name. */
  private readonly staged = new Map<string, StagedSession>();

  constructor(
    private readonly db: CasDatabase,
    private readonly commit: CommitChange,
    private readonly group: GroupCommit,
    private readonly logger: Logger,
  ) {}

  /** Loads a session and its secrets; undefined when no session has that name. */
  load(name: string): StoredSession | undefined {
    const record = this.db.getSession(name);
    if (record === undefined) return undefined;
    return { record, session: record.data as Session, secrets: record.secrets as GeneratedSecrets };
  }

  /** Creates a session; `log` is the request's logger, so log lines carry the request id. */
  async create(text: string, client: ClientKey, log: Logger = this.logger): Promise<SessionSummary> {
    const session = parseSession(text);
    if (session.predecessor !== undefined) {
      throw new CasError('SESSION_CONFLICT', `session "${session.name}" has a predecessor, but a new session must not have one; use cas session update to change an existing session`, {
        details: { session: session.name },
      });
    }

    // Secrets are generated before the write gate is taken, because generating keys can take minutes for a
    // large session and every other writer (configuration releases too) would wait meanwhile. The checks run
    // before, so a request that will be rejected generates nothing, and again under the gate.
    this.checkCreatable(session.name, client);
    const pending = { session, secrets: { format: 1, secrets: {}, imports: {} } as GeneratedSecrets };
    const secrets = await generateSecrets(session, undefined, this.writerImporter(pending));

    const staged = await this.db.writeGate.run(async () => {
      this.checkCreatable(session.name, client);
      await this.checkImportsUnchanged(pending, secrets);
      const hash = sessionHash(session);
      const now = new Date().toISOString();
      const record: SessionRecord = { name: session.name, hash, text, creatorKeyHash: client.keyHash, createdAt: now, updatedAt: now, secrets, data: session };
      const entry = { event: 'session.created', actor: { kind: 'client', keyHash: client.keyHash }, target: { session: session.name }, outcome: 'success', details: { sessionHash: hash } } as const;
      return { hash, change: this.stage(entry, record, session.name) };
    });
    await staged.change.durable;
    log.info({ session: session.name, sessionHash: staged.hash }, 'session created');
    return { name: session.name, hash: staged.hash };
  }

  async update(name: string, text: string, client: ClientKey, log: Logger = this.logger): Promise<SessionSummary> {
    const session = parseSession(text);
    if (session.name !== name) {
      throw new CasError('INVALID_ARGUMENT', `the session document is named "${session.name}" but the request updates "${name}"`, { details: { session: name } });
    }

    // As in create, secrets are generated before the write gate is taken and the checks run again under it.
    // An update whose predecessor is still the current hash replaces the version the secrets were made from.
    const prepared = this.checkUpdatable(name, session, client);
    const pending = { session, secrets: prepared.secrets };
    const secrets = await generateSecrets(session, prepared.secrets, this.writerImporter(pending));

    const staged = await this.db.writeGate.run(async () => {
      const current = this.checkUpdatable(name, session, client);
      await this.checkImportsUnchanged(pending, secrets);
      const hash = sessionHash(session);
      const record: SessionRecord = {
        ...current.record,
        hash,
        predecessor: current.record.hash,
        text,
        updatedAt: new Date().toISOString(),
        secrets,
        data: session,
      };
      const entry = {
        event: 'session.updated',
        actor: { kind: 'client', keyHash: client.keyHash },
        target: { session: name },
        outcome: 'success',
        details: { sessionHash: hash, predecessor: current.record.hash },
      } as const;
      return { hash, predecessor: current.record.hash, change: this.stage(entry, record, name) };
    });
    await staged.change.durable;
    log.info({ session: name, sessionHash: staged.hash, predecessor: staged.predecessor }, 'session updated');
    return { name, hash: staged.hash };
  }

  /** Returns the session for a reader: the document with secret values withheld, never generated secrets. */
  read(name: string, client: ClientKey): { name: string; hash: string; predecessor?: string; creatorKeyHash: string; session: string } {
    const stored = this.requireAllowed(this.load(name), name, client, 'read');
    return {
      name,
      hash: stored.record.hash,
      ...(stored.record.predecessor === undefined ? {} : { predecessor: stored.record.predecessor }),
      creatorKeyHash: stored.record.creatorKeyHash,
      session: renderSessionForRead(stored.session, stored.record.text),
    };
  }

  /**
   * Reads a session as `read` does. When the owner setting audit.recordSessionReads is on, it first appends
   * `session.read` (outcome success, or denied when the access policy rejects the client), so a read whose
   * audit entry cannot be written fails.
   */
  async readAudited(name: string, client: ClientKey, log: Logger = this.logger): Promise<ReturnType<SessionService['read']>> {
    if (!readOwnerSettings(this.db).audit.recordSessionReads) return this.read(name, client);

    const actor = { kind: 'client' as const, keyHash: client.keyHash };
    let view: ReturnType<SessionService['read']>;
    try {
      view = this.read(name, client);
    } catch (error) {
      if (isCasError(error, 'PERMISSION_DENIED')) {
        await this.commit({ event: 'session.read', actor, target: { session: name }, outcome: 'denied', details: {} }, () => undefined);
        log.info({ session: name, clientKeyHash: client.keyHash }, 'denied session read recorded in the audit log');
      }
      throw error;
    }
    await this.commit({ event: 'session.read', actor, target: { session: name }, outcome: 'success', details: { sessionHash: view.hash } }, () => undefined);
    return view;
  }

  /** Names and hashes of the sessions the client may read. */
  list(client: ClientKey): SessionSummary[] {
    const visible: SessionSummary[] = [];
    for (const name of this.db.listSessionNames()) {
      const stored = this.load(name);
      if (stored !== undefined && isAllowed(stored.session.accessPolicy, 'read', client, stored.record.creatorKeyHash)) {
        visible.push({ name, hash: stored.record.hash });
      }
    }
    return visible;
  }

  /**
   * Deletes a session; needs `update` permission. A session with sessions below it cannot be deleted, like a
   * directory that is not empty: once its name is free, any client could create it again, gain
   * `create_sessions` in the namespace and import what other sessions export to it.
   */
  async delete(name: string, client: ClientKey, log: Logger = this.logger): Promise<void> {
    const staged = await this.db.writeGate.run(() => {
      const current = this.requireAllowed(this.loadForWrite(name), name, client, 'update');
      const below = this.sessionNamesForWrite().filter((other) => other.startsWith(`${name}/`));
      if (below.length > 0) {
        throw new CasError('SESSION_CONFLICT', `session "${name}" has ${below.length} session${below.length === 1 ? '' : 's'} below it; delete those first`, {
          details: { session: name, below: below.length },
        });
      }
      const entry = { event: 'session.deleted', actor: { kind: 'client', keyHash: client.keyHash }, target: { session: name }, outcome: 'success', details: { sessionHash: current.record.hash } } as const;
      return { hash: current.record.hash, change: this.stage(entry, null, name) };
    });
    await staged.change.durable;
    log.info({ session: name, sessionHash: staged.hash }, 'session deleted');
  }

  /**
   * Stages a session change for the group commit and shows it to later writers' checks until it is
   * committed or rejected. Runs inside the write gate.
   */
  private stage(entry: AuditEventInput, record: SessionRecord | null, name: string): StagedChange {
    const staged: StagedSession = { record };
    this.staged.set(name, staged);
    const write = record === null ? () => void this.db.deleteSession(name) : () => this.db.putSession(record);
    return this.group.stage(entry, write, () => {
      // A later change of the same session may have replaced this one in the map.
      if (this.staged.get(name) === staged) this.staged.delete(name);
    });
  }

  /** Loads a session as the next change must see it: its staged change if any, else the committed session. */
  private loadForWrite(name: string): StoredSession | undefined {
    const staged = this.staged.get(name);
    if (staged === undefined) return this.load(name);
    const { record } = staged;
    return record === null ? undefined : { record, session: record.data as Session, secrets: record.secrets as GeneratedSecrets };
  }

  /** Names of the committed sessions with the staged creates added and the staged deletes removed. */
  private sessionNamesForWrite(): string[] {
    const names = new Set(this.db.listSessionNames());
    for (const [name, staged] of this.staged) {
      if (staged.record === null) names.delete(name);
      else names.add(name);
    }
    return [...names];
  }

  /** Checks that no session has the name and that the client may create sessions in its namespace. */
  private checkCreatable(name: string, client: ClientKey): void {
    if (this.loadForWrite(name) !== undefined) {
      throw new CasError('SESSION_EXISTS', `session "${name}" already exists; use cas session update to change it`, { details: { session: name } });
    }
    this.checkParentAllows(name, client);
    this.checkTopLevelCreator(name, client);
  }

  /** Checks the owner setting sessions.topLevelCreators for a session without a parent namespace. */
  private checkTopLevelCreator(name: string, client: ClientKey): void {
    if (parentNamespaces(name).length > 0) return;
    const creators = readOwnerSettings(this.db).sessions.topLevelCreators;
    if (creators === null || creators.includes(client.keyHash)) return;
    throw new CasError('PERMISSION_DENIED', `the client key ${client.keyHash} may not create top-level session "${name}"; the CAS owner limits that to the keys in the setting sessions.topLevelCreators`, {
      details: { session: name, clientKeyHash: client.keyHash },
    });
  }

  /** Checks that the client may update the session and that the document's predecessor is its current hash. */
  private checkUpdatable(name: string, session: Session, client: ClientKey): StoredSession {
    const current = this.requireAllowed(this.loadForWrite(name), name, client, 'update');
    if (session.predecessor === undefined) {
      throw new CasError('SESSION_CONFLICT', `updating session "${name}" needs predecessor: ${current.record.hash} (its current hash); cas session update fills it in`, {
        details: { session: name, current: current.record.hash },
      });
    }
    if (session.predecessor !== current.record.hash) {
      throw new CasError('SESSION_CONFLICT', `session "${name}" changed since this update was prepared: predecessor is ${session.predecessor} but the current hash is ${current.record.hash}; read the session again and reapply the change`, {
        details: { session: name, predecessor: session.predecessor, current: current.record.hash },
      });
    }
    return current;
  }

  /**
   * Resolves the imports again under the write gate, as generateSecrets did with `pending`: an exporter that
   * changed or withdrew its export while the secrets were generated makes the change fail, so nothing is
   * stored that the exporter no longer allows.
   */
  private async checkImportsUnchanged(pending: { session: Session; secrets: GeneratedSecrets }, secrets: GeneratedSecrets): Promise<void> {
    const { session } = pending;
    if (!session.secrets.some((secret) => secret.import !== undefined)) return;
    const current = await resolveImports(session, this.writerImporter(pending));
    if (JSON.stringify(current) !== JSON.stringify(secrets.imports)) {
      throw new CasError('SESSION_CONFLICT', `a session that "${session.name}" imports from changed while its secrets were generated; send the request again`, {
        details: { session: session.name },
      });
    }
  }

  /** Checks that the session `stored` (loaded by name) exists and that the client may perform the action on it. */
  private requireAllowed(stored: StoredSession | undefined, name: string, client: ClientKey, action: 'read' | 'update'): StoredSession {
    if (stored === undefined) {
      throw new CasError('SESSION_NOT_FOUND', `session "${name}" does not exist`, { details: { session: name } });
    }
    if (!isAllowed(stored.session.accessPolicy, action, client, stored.record.creatorKeyHash)) {
      throw new CasError('PERMISSION_DENIED', `the client key ${client.keyHash} may not ${action} session "${name}" (access_policy.${action})`, {
        details: { session: name, action, clientKeyHash: client.keyHash },
      });
    }
    return stored;
  }

  /** Creates the importer that configuration releases use: it reads committed exporting sessions and enforces their exports. */
  importer(): ReturnType<typeof createImportResolver> {
    return createImportResolver((name) => {
      const stored = this.load(name);
      return stored === undefined ? undefined : { session: stored.session, secrets: stored.secrets, hash: stored.record.hash };
    });
  }

  /**
   * Creates the importer for a change: it reads exporting sessions with their staged changes. Imports that
   * lead back to `pending`, the session being written, read its new version, so a cycle through it is detected.
   */
  private writerImporter(pending: { session: Session; secrets: GeneratedSecrets }): ReturnType<typeof createImportResolver> {
    return createImportResolver((name) => {
      if (name === pending.session.name) return pending;
      const stored = this.loadForWrite(name);
      return stored === undefined ? undefined : { session: stored.session, secrets: stored.secrets, hash: stored.record.hash };
    });
  }

  /** Checks that the client has `create_sessions` on the parent session (`a` for `a/b`). */
  private checkParentAllows(name: string, client: ClientKey): void {
    const parent = parentNamespaces(name).at(-1);
    if (parent === undefined) return;
    const stored = this.loadForWrite(parent);
    if (stored === undefined) {
      throw new CasError('SESSION_NOT_FOUND', `session "${name}" lies in namespace "${parent}", which does not exist; create session "${parent}" first`, {
        details: { session: name, parent },
      });
    }
    if (!isAllowed(stored.session.accessPolicy, 'create_sessions', client, stored.record.creatorKeyHash)) {
      throw new CasError('PERMISSION_DENIED', `the client key ${client.keyHash} may not create sessions in namespace "${parent}" (access_policy.create_sessions of "${parent}")`, {
        details: { session: name, parent, clientKeyHash: client.keyHash },
      });
    }
  }
}
