import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, fchmodSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FILE_NAMES } from '../config/defaults.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { APPLICATION_LABEL_PREFIX, DATABASE_KEY_LENGTH, deriveStoreSubkeys, hkdfSha256, hmacSha256, type StoreSubkeys } from './key-derivation.js';
import { KeyStore } from './key-store.js';
import { decryptValue, encryptValue } from './value-cipher.js';
import { WriteGate } from './write-gate.js';
import type { EvidenceType, KeyStoreEntry, Platform, PlatformRegistration, SessionRecord } from './types.js';

/** `PRAGMA application_id` of a CAS database: ASCII "CAS1". */
export const APPLICATION_ID = 0x43415331;
/** `PRAGMA user_version`: the schema version. */
export const SCHEMA_VERSION = 2;
/** Plaintext of the key check value; decrypting it proves that the unwrapped key is this database's key. */
const KEY_CHECK_PLAINTEXT = Buffer.from('cas database key check v1', 'ascii');

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/**
 * `store_info` row with 32 random bytes from which application keys are derived. It is re-encrypted but not
 * replaced by a key rotation, so keys such as the audit HMAC key stay the same across rotations.
 */
const APPLICATION_ROOT_ROW = 'application_key_root';
/** `store_info` row present while a platform removal awaits its key rotation; the value is the platform id. */
const ROTATION_DUE_ROW = 'key_rotation_due';

/** Durable steps of `rotateDatabaseKey`, in order. */
export type RotationStep = 'staged-key-store' | 'database-reencrypted' | 'database-committed' | 'key-store-finished';

const SCHEMA = `
  CREATE TABLE store_info (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE meta (lookup BLOB PRIMARY KEY NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL) STRICT, WITHOUT ROWID;
  CREATE TABLE sessions (lookup BLOB PRIMARY KEY NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL) STRICT, WITHOUT ROWID;
`;

type Table = 'store_info' | 'meta' | 'sessions';
/** Encrypted columns; `meta` and `sessions` have a `name` column. */
type Column = 'value' | 'name';

export interface OpenDatabaseOptions {
  dataDir: string;
  platform: Platform;
  logger?: Logger;
  /** Open without writing (for example to verify a snapshot). The database and key store must exist. */
  readOnly?: boolean;
  /** Recorded as `evidenceType` of the first key store entry; default `simulation` (required in hardware mode). */
  evidenceType?: EvidenceType;
  /** Recorded as `registeredBy` of the first key store entry when the database is created; default `initial`. */
  registeredBy?: string;
  /**
   * Platform directory shown in the KEY_STORE_NO_ENTRY message, so the operator can copy the register
   * command; defaults to the placeholder DIR.
   */
  platformDir?: string;
  /** How long opening waits for another process's lock on cas.db before failing, in milliseconds; default 5000. */
  busyTimeoutMs?: number;
}

/**
 * The encrypted CAS database (`cas.db`) and its key store (`cas.key-store`). Every stored value is encrypted
 * with AES-256-GCM under a subkey of the database key, and its AAD binds it to its table and row. Session and
 * meta names appear only as HMAC-SHA-256 lookup keys. Writes must run inside `writeGate.run()`.
 */
export class CasDatabase {
  readonly platformId: string;
  readonly paths: { database: string; keyStore: string };
  readonly writeGate = new WriteGate();
  readonly readOnly: boolean;

  private readonly db: Database.Database;
  /** Prepared statements by SQL text; a fixed set, because every query text is a constant. */
  private readonly statements = new Map<string, Database.Statement>();
  private keys: StoreSubkeys;
  private databaseKey: Buffer;
  private keyStore: KeyStore;
  private readonly logger: Logger;
  private closed = false;

  private constructor(init: {
    db: Database.Database;
    databaseKey: Buffer;
    keyStore: KeyStore;
    platformId: string;
    paths: { database: string; keyStore: string };
    logger: Logger;
    readOnly: boolean;
  }) {
    this.db = init.db;
    this.databaseKey = init.databaseKey;
    this.keys = deriveStoreSubkeys(init.databaseKey);
    this.keyStore = init.keyStore;
    this.platformId = init.platformId;
    this.paths = init.paths;
    this.logger = init.logger;
    this.readOnly = init.readOnly;
  }

  /**
   * Opens the database in `dataDir`, creating `cas.db` and `cas.key-store` when both are absent. Fails when
   * only one of them exists (DATABASE_ERROR or KEY_STORE_INVALID), when the key store has no entry for this
   * platform (KEY_STORE_NO_ENTRY), when the key does not decrypt the database (DECRYPTION_FAILED) and when
   * SQLite's quick_check reports damage (DATABASE_ERROR).
   */
  static open(options: OpenDatabaseOptions): CasDatabase {
    const logger = options.logger ?? silentLogger();
    const readOnly = options.readOnly ?? false;
    const paths = { database: join(options.dataDir, FILE_NAMES.database), keyStore: join(options.dataDir, FILE_NAMES.keyStore) };
    const databaseExists = existsSync(paths.database);
    const keyStoreExists = existsSync(paths.keyStore);

    if (!databaseExists && !keyStoreExists) {
      if (readOnly) {
        throw new CasError('DATABASE_ERROR', `No database in ${options.dataDir}: ${FILE_NAMES.database} and ${FILE_NAMES.keyStore} are both missing`);
      }
      return CasDatabase.create(options, paths, logger);
    }
    if (!keyStoreExists) {
      throw new CasError(
        'KEY_STORE_INVALID',
        `Key store ${paths.keyStore} is missing, but database ${paths.database} exists; without the key store the database cannot be decrypted. Restore the key store from the snapshot that contains this database. If no CAS ever started successfully on ${options.dataDir}, remove ${paths.database} to create a new database.`,
      );
    }
    if (!databaseExists) {
      throw new CasError(
        'DATABASE_ERROR',
        `Database ${paths.database} is missing, but key store ${paths.keyStore} exists; restore the database from a snapshot or remove the key store to start an empty CAS.`,
      );
    }
    return CasDatabase.openExisting(options, paths, logger, readOnly);
  }

  private static create(options: OpenDatabaseOptions, paths: CasDatabase['paths'], logger: Logger): CasDatabase {
    if (options.platform.mode === 'hardware' && options.evidenceType === undefined) {
      throw new CasError('INVALID_ARGUMENT', 'Creating a database on a hardware platform needs the evidence type of that platform');
    }
    const databaseKey = randomBytes(DATABASE_KEY_LENGTH);
    const keyStore = KeyStore.create(databaseKey, {
      publicKeyPem: options.platform.publicKeyPem,
      evidenceType: options.evidenceType ?? 'simulation',
      registeredBy: options.registeredBy ?? 'initial',
    });

    // SQLite gives the -wal and -shm files the permissions of the database file, so creating it 0600 first
    // keeps all three private. O_EXCL makes a concurrent creator fail here instead of sharing the file.
    try {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
      closeSync(openSync(paths.database, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
    } catch (error) {
      throw toDatabaseError(error, `Cannot create database ${paths.database}`);
    }
    let db: Database.Database | undefined;
    try {
      db = openSqlite(paths.database, false, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
      const store = new CasDatabase({ db, databaseKey, keyStore, platformId: options.platform.id, paths, logger, readOnly: false });
      db.pragma(`application_id = ${APPLICATION_ID}`);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      db.exec(SCHEMA);
      store.writeRow('store_info', Buffer.from('key_check'), KEY_CHECK_PLAINTEXT);
      store.writeRow('store_info', Buffer.from('change_counter'), encodeCounter(0n));
      store.writeRow('store_info', Buffer.from(APPLICATION_ROOT_ROW), randomBytes(DATABASE_KEY_LENGTH));
      // The key store is written last. A crash before this line leaves an empty database without a key
      // store, which the next open reports instead of silently starting over.
      keyStore.writeAtomic(paths.keyStore, databaseKey);
      logger.info({ database: paths.database, keyStore: paths.keyStore, platformId: options.platform.id }, 'created encrypted database');
      return store;
    } catch (error) {
      // The new database contains no data yet, so removing it lets the next start try again from scratch.
      db?.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${paths.database}${suffix}`, { force: true });
      rmSync(paths.keyStore, { force: true });
      throw toDatabaseError(error, `Cannot create database ${paths.database}`);
    }
  }

  private static openExisting(options: OpenDatabaseOptions, paths: CasDatabase['paths'], logger: Logger, readOnly: boolean): CasDatabase {
    const { platform } = options;
    const keyStore = KeyStore.read(paths.keyStore);
    const entry = keyStore.entry(platform.id);
    if (entry === undefined) {
      throw new CasError(
        'KEY_STORE_NO_ENTRY',
        `Key store ${paths.keyStore} has no entry for this platform (id ${platform.id}), so this CAS cannot decrypt the database. ` +
          `Register this platform as a backup target on the primary: cas backup register --cas URL --platform-dir ${options.platformDir ?? 'DIR'}`,
        { details: { platformId: platform.id, keyStore: paths.keyStore, registeredPlatforms: keyStore.entries().map((e) => e.platformId) } },
      );
    }
    const unwrap = (wrapped: KeyStoreEntry): Buffer => {
      try {
        return platform.unwrapDatabaseKey(wrapped);
      } catch (error) {
        if (isCasError(error, 'DECRYPTION_FAILED')) {
          throw new CasError('DECRYPTION_FAILED', `Decryption failed for key store ${paths.keyStore}: ${error.message}`, { cause: error });
        }
        throw error;
      }
    };
    let databaseKey = unwrap(entry);
    keyStore.verifyMac(databaseKey, paths.keyStore);

    const db = openSqlite(paths.database, readOnly, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
    let store: CasDatabase;
    try {
      // A key store with a next key means a rotation stopped before its last step. The key check value
      // tells which key the database is encrypted under: the current one (the re-encryption did not
      // commit) or the next one (it did). A writable open finishes the key store accordingly.
      let finishedKeyStore = keyStore;
      let rotationCommitted = false;
      if (keyStore.rotating) {
        const nextEntry = keyStore.nextEntry(platform.id);
        if (nextEntry === undefined) throw new CasError('KEY_STORE_INVALID', `Key store ${paths.keyStore} has no next entry for platform ${platform.id}`);
        if (keyCheckPasses(db, databaseKey)) {
          finishedKeyStore = keyStore.withoutNext();
        } else {
          const nextKey = unwrap(nextEntry);
          keyStore.verifyNextMac(nextKey, paths.keyStore);
          databaseKey.fill(0);
          databaseKey = nextKey;
          finishedKeyStore = keyStore.promoteNext();
          rotationCommitted = true;
        }
      }
      store = new CasDatabase({ db, databaseKey, keyStore: finishedKeyStore, platformId: platform.id, paths, logger, readOnly });
      store.checkSchema();
      store.checkKey();
      store.loadCounter();
      if (keyStore.rotating && !readOnly) {
        finishedKeyStore.writeAtomic(paths.keyStore, databaseKey);
        logger.warn({ keyStore: paths.keyStore, rotationCommitted }, 'finished the key store of an interrupted key rotation');
      }
      if (!readOnly && store.keyRotationDue) {
        logger.warn({ database: paths.database }, 'a platform was removed but the key rotation did not run; rotating now');
        try {
          store.rotate();
        } catch (error) {
          // A failed rotation leaves the database under the old key, so opening it still works. Failing
          // here would lock this CAS out of its own database; the next writable open tries again.
          logger.error({ err: error, database: paths.database }, 'key rotation after a platform removal failed; the removed platform may still decrypt later copies');
        }
      }
    } catch (error) {
      db.close();
      throw error;
    }
    logger.info({ database: paths.database, platformId: platform.id, readOnly, changeCounter: store.changeCounter() }, 'opened encrypted database');
    return store;
  }

  // --- meta values ---------------------------------------------------------------------------------------

  getMeta(name: string): Buffer | undefined {
    return this.readRow('meta', this.metaLookup(name));
  }

  putMeta(name: string, value: Buffer): void {
    this.assertWritable('putMeta');
    const lookup = this.metaLookup(name);
    const encryptedName = this.encrypt('meta', 'name', lookup, Buffer.from(name, 'utf8'));
    const encryptedValue = this.encrypt('meta', 'value', lookup, value);
    this.transaction(() => {
      this.query(() =>
        this
          .statement('INSERT INTO meta (lookup, name, value) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET name = excluded.name, value = excluded.value')
          .run(lookup, encryptedName, encryptedValue),
      );
      this.bumpCounter();
    });
  }

  deleteMeta(name: string): boolean {
    this.assertWritable('deleteMeta');
    return this.transaction(() => this.deleteRow('meta', this.metaLookup(name)));
  }

  // --- sessions --------------------------------------------------------------------------------------------

  getSession(name: string): SessionRecord | undefined {
    const plaintext = this.readRow('sessions', this.sessionLookup(name));
    if (plaintext === undefined) return undefined;
    const record = parseSession(plaintext, this.paths.database);
    if (record.name !== name) {
      throw new CasError('DECRYPTION_FAILED', `A session row in ${this.paths.database} decrypted to another session name than the one requested`);
    }
    return record;
  }

  putSession(record: SessionRecord): void {
    this.assertWritable('putSession');
    if (typeof record.name !== 'string' || record.name.length === 0) {
      throw new CasError('INVALID_ARGUMENT', 'A session record needs a non-empty name');
    }
    let json: string;
    try {
      json = JSON.stringify(record);
    } catch (error) {
      throw new CasError('INVALID_ARGUMENT', `Session record ${record.name} cannot be stored: it is not JSON-serialisable`, { cause: error });
    }
    const lookup = this.sessionLookup(record.name);
    const name = this.encrypt('sessions', 'name', lookup, Buffer.from(record.name, 'utf8'));
    const value = this.encrypt('sessions', 'value', lookup, Buffer.from(json, 'utf8'));
    this.transaction(() => {
      this.query(() =>
        this
          .statement('INSERT INTO sessions (lookup, name, value) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET name = excluded.name, value = excluded.value')
          .run(lookup, name, value),
      );
      this.bumpCounter();
    });
  }

  deleteSession(name: string): boolean {
    this.assertWritable('deleteSession');
    return this.transaction(() => this.deleteRow('sessions', this.sessionLookup(name)));
  }

  /** Names of all sessions, sorted. Decrypts the name column of every session row. */
  listSessionNames(): string[] {
    const rows = this.query(() => this.statement('SELECT lookup, name FROM sessions').all() as Array<{ lookup: Buffer; name: Buffer }>);
    return rows.map((row) => this.decrypt('sessions', 'name', row.lookup, row.name).toString('utf8')).sort();
  }

  countSessions(): number {
    return this.query(() => (this.statement('SELECT count(*) AS n FROM sessions').get() as { n: number }).n);
  }

  // --- transactions and change counter ---------------------------------------------------------------------

  /**
   * Runs `fn` in one SQLite transaction (a savepoint when nested). A throw rolls back every write in it and
   * reaches the caller unchanged, except that SQLite errors become DATABASE_ERROR. `fn` must be synchronous,
   * as better-sqlite3 transactions are.
   */
  transaction<T>(fn: () => T): T {
    this.assertOpen();
    try {
      return this.db.transaction(fn)();
    } catch (error) {
      throw error instanceof Database.SqliteError ? toDatabaseError(error, `Transaction on ${this.paths.database} failed`) : error;
    }
  }

  /**
   * Number of committed changes since the database was created. It is stored encrypted in the database, so
   * it survives restarts and a snapshot can record the value it copied.
   */
  changeCounter(): number {
    return Number(this.loadCounter());
  }

  // --- platforms (key store entries) -----------------------------------------------------------------------

  listPlatforms(): KeyStoreEntry[] {
    return this.keyStore.entries();
  }

  /**
   * Wraps the database key for another platform's public key and writes the key store. Idempotent: an
   * already registered platform keeps its entry and `added` is false.
   */
  addPlatform(registration: PlatformRegistration): { entry: KeyStoreEntry; added: boolean } {
    this.assertWritable('addPlatform');
    const result = this.keyStore.addPlatform(this.databaseKey, registration);
    if (result.added) {
      this.commitKeyStoreChange(() => this.keyStore.removeEntry(result.entry.platformId));
      this.logger.info({ platformId: result.entry.platformId, evidenceType: result.entry.evidenceType, registeredBy: result.entry.registeredBy }, 'platform added to key store');
    }
    return result;
  }

  /**
   * Removes a platform's entry and rotates the database key, so that a copy of the old key store does not
   * open the database any more. This platform's own entry cannot be removed, since the CAS could not restart.
   *
   * Called inside a transaction (for example together with an audit head), the rotation cannot run yet,
   * because it must commit on its own before the new key store is written. The removal then records that a
   * rotation is due, in the same transaction; the caller runs `rotateDatabaseKey()` after the commit, and a
   * writable open runs it if the process stopped in between.
   */
  removePlatform(platformId: string): boolean {
    this.assertWritable('removePlatform');
    if (platformId === this.platformId) {
      throw new CasError('INVALID_ARGUMENT', `Platform ${platformId} is the platform of this CAS; removing its entry would lock this CAS out of its database`);
    }
    const entry = this.keyStore.entry(platformId);
    if (entry === undefined) return false;
    this.keyStore.removeEntry(platformId);
    this.commitKeyStoreChange(() => this.keyStore.addEntry(entry), () => this.writeRow('store_info', Buffer.from(ROTATION_DUE_ROW), Buffer.from(platformId, 'ascii')));
    this.logger.info({ platformId }, 'platform removed from key store');
    if (!this.db.inTransaction) this.rotate();
    return true;
  }

  /** True when a platform was removed and the key rotation that follows has not run yet. */
  get keyRotationDue(): boolean {
    return this.readRow('store_info', Buffer.from(ROTATION_DUE_ROW)) !== undefined;
  }

  /**
   * Replaces the database key with a new random key: re-encrypts every value and recomputes every lookup
   * key in one transaction, and wraps the new key for every platform in the key store. Must run inside
   * `writeGate.run()` and outside a transaction. Time grows with the database size; writers wait meanwhile.
   * Crash safety (docs/storage-format.md, "Key rotation"): the key store holding both keys is written
   * first, then the database commits, then the key store with only the new key is written.
   * `onStep` is called after each step, `database-reencrypted` before the commit (for crash tests).
   */
  rotateDatabaseKey(options: { onStep?: (step: RotationStep) => void } = {}): void {
    this.assertWritable('rotateDatabaseKey');
    this.rotate(options.onStep);
  }

  private rotate(onStep?: (step: RotationStep) => void): void {
    if (this.db.inTransaction) {
      throw new CasError('INTERNAL', 'rotateDatabaseKey must run outside a transaction, because it commits before it writes the new key store');
    }
    const oldKey = this.databaseKey;
    const oldKeys = this.keys;
    const newKey = randomBytes(DATABASE_KEY_LENGTH);
    const newKeys = deriveStoreSubkeys(newKey);

    // Step 1: a key store with both keys. Until the database commits, the current entries open it.
    const staged = this.keyStore.withNextKey(newKey);
    staged.writeAtomic(this.paths.keyStore, oldKey);
    onStep?.('staged-key-store');

    // Step 2: one transaction re-encrypts every row; the key check value then needs the next key.
    let rows = 0;
    try {
      this.transaction(() => {
        this.bumpCounter();
        this.query(() => this.statement('DELETE FROM store_info WHERE name = ?').run(ROTATION_DUE_ROW));
        rows = this.reencryptAll(oldKeys, newKeys);
        onStep?.('database-reencrypted');
      });
    } catch (error) {
      newKey.fill(0);
      // The staged key store still opens the database under the old key; drop its next entries. If that
      // write fails too, the next open drops them.
      try {
        this.keyStore.writeAtomic(this.paths.keyStore, oldKey);
      } catch (writeError) {
        this.logger.error({ err: writeError, keyStore: this.paths.keyStore }, 'cannot drop the next key after a failed rotation');
      }
      throw error;
    }
    this.databaseKey = newKey;
    this.keys = newKeys;
    onStep?.('database-committed');

    // Step 3: the key store with only the new key. Until this rename, an open finds the next entries.
    this.keyStore = staged.promoteNext();
    this.keyStore.writeAtomic(this.paths.keyStore, newKey);
    onStep?.('key-store-finished');
    oldKey.fill(0);
    for (const key of Object.values(oldKeys)) key.fill(0);
    this.logger.info({ database: this.paths.database, rows, platforms: this.keyStore.entries().length }, 'rotated the database key');
  }

  /** Decrypts every row under `from` and writes it back under `to`, with lookup keys recomputed. Returns the row count. */
  private reencryptAll(from: StoreSubkeys, to: StoreSubkeys): number {
    const description = (table: Table, column: Column): string => `${table} row (${column}) in ${this.paths.database}`;
    const open = (table: Table, column: Column, lookup: Buffer, value: Buffer): Buffer =>
      decryptValue(from.valueEncryption, cellAad(table, column, lookup), value, description(table, column));
    const seal = (table: Table, column: Column, lookup: Buffer, plaintext: Buffer): Buffer => encryptValue(to.valueEncryption, cellAad(table, column, lookup), plaintext);

    const info = this.db.prepare('SELECT name, value FROM store_info').all() as Array<{ name: string; value: Buffer }>;
    const updateInfo = this.db.prepare('UPDATE store_info SET value = ? WHERE name = ?');
    for (const row of info) {
      const lookup = Buffer.from(row.name, 'ascii');
      updateInfo.run(seal('store_info', 'value', lookup, open('store_info', 'value', lookup, row.value)), row.name);
    }
    let count = info.length;
    for (const table of ['meta', 'sessions'] as const) {
      const lookupKey = table === 'meta' ? { from: from.metaLookup, to: to.metaLookup } : { from: from.sessionLookup, to: to.sessionLookup };
      const rows = this.db.prepare(`SELECT lookup, name, value FROM ${table}`).all() as Array<{ lookup: Buffer; name: Buffer; value: Buffer }>;
      this.db.prepare(`DELETE FROM ${table}`).run();
      const insert = this.db.prepare(`INSERT INTO ${table} (lookup, name, value) VALUES (?, ?, ?)`);
      for (const row of rows) {
        const name = open(table, 'name', row.lookup, row.name);
        if (!hmacSha256(lookupKey.from, name).equals(row.lookup)) {
          throw new CasError('DECRYPTION_FAILED', `A ${table} row in ${this.paths.database} has a lookup key that does not match its name`);
        }
        const value = open(table, 'value', row.lookup, row.value);
        const lookup = hmacSha256(lookupKey.to, name);
        insert.run(lookup, seal(table, 'name', lookup, name), seal(table, 'value', lookup, value));
      }
      count += rows.length;
    }
    return count;
  }

  /**
   * Counts a change of the in-memory key store and writes it to disk, undoing the in-memory change when the
   * write fails. The counter is committed first: if the file write then fails, the counter is one ahead of
   * the files, which costs one redundant snapshot, never a missed one.
   */
  private commitKeyStoreChange(undo: () => unknown, alsoWrite?: () => void): void {
    try {
      this.transaction(() => {
        this.bumpCounter();
        alsoWrite?.();
      });
      this.keyStore.writeAtomic(this.paths.keyStore, this.databaseKey);
    } catch (error) {
      undo();
      throw error;
    }
  }

  // --- keys, files and lifetime ----------------------------------------------------------------------------

  /**
   * Derives a 32-byte key for another component (for example the audit log) from the database key with
   * HKDF-SHA-256. `label` must start with `cas/v1/app/`, so no caller can derive one of the store's own keys.
   */
  deriveApplicationKey(label: string): Buffer {
    this.assertOpen();
    if (!label.startsWith(APPLICATION_LABEL_PREFIX) || label.length === APPLICATION_LABEL_PREFIX.length) {
      throw new CasError('INTERNAL', `Application key labels start with ${APPLICATION_LABEL_PREFIX} and name a purpose; got ${JSON.stringify(label)}`);
    }
    const root = this.readRow('store_info', Buffer.from(APPLICATION_ROOT_ROW));
    if (root === undefined || root.length !== DATABASE_KEY_LENGTH) {
      throw new CasError('DATABASE_ERROR', `Database ${this.paths.database} has no valid application key root`);
    }
    return hkdfSha256(root, label);
  }

  /**
   * Copies the database into `destinationPath` (mode 0600) with SQLite's online backup API. The copy is
   * consistent on its own; pause the write gate around it to keep it consistent with a copy of the key store.
   * The copy is switched to rollback-journal mode, so a read-only open of it creates no -wal or -shm file
   * beside it. Opening it read-write switches it back to WAL.
   */
  async backupTo(destinationPath: string): Promise<void> {
    this.assertOpen();
    try {
      const fd = openSync(destinationPath, constants.O_CREAT | constants.O_WRONLY, 0o600);
      try {
        fchmodSync(fd, 0o600);
      } finally {
        closeSync(fd);
      }
      await this.db.backup(destinationPath);
      const copy = new Database(destinationPath, { fileMustExist: true });
      try {
        copy.pragma('journal_mode = DELETE');
      } finally {
        copy.close();
      }
    } catch (error) {
      throw toDatabaseError(error, `Backup of ${this.paths.database} to ${destinationPath} failed`);
    }
  }

  /** Moves every WAL frame into the database file and truncates the WAL. */
  checkpoint(): void {
    this.assertOpen();
    if (this.readOnly) return;
    this.query(() => this.db.pragma('wal_checkpoint(TRUNCATE)'));
  }

  /** Checkpoints and closes. Further calls are ignored. */
  close(): void {
    if (this.closed) return;
    try {
      this.checkpoint();
    } finally {
      this.closed = true;
      this.db.close();
      this.databaseKey.fill(0);
      for (const key of Object.values(this.keys)) key.fill(0);
      this.logger.info({ database: this.paths.database }, 'closed database');
    }
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  // --- internals -------------------------------------------------------------------------------------------

  private sessionLookup(name: string): Buffer {
    return hmacSha256(this.keys.sessionLookup, Buffer.from(name, 'utf8'));
  }

  private metaLookup(name: string): Buffer {
    return hmacSha256(this.keys.metaLookup, Buffer.from(name, 'utf8'));
  }

  private encrypt(table: Table, column: Column, lookup: Buffer, plaintext: Buffer): Buffer {
    return encryptValue(this.keys.valueEncryption, cellAad(table, column, lookup), plaintext);
  }

  private decrypt(table: Table, column: Column, lookup: Buffer, ciphertext: Buffer): Buffer {
    return decryptValue(this.keys.valueEncryption, cellAad(table, column, lookup), ciphertext, `${table} row (${column}) in ${this.paths.database}`);
  }

  /** Reads and decrypts the value column of one row; undefined when the row does not exist. */
  private readRow(table: Table, lookup: Buffer): Buffer | undefined {
    const row = this.query(() => this.statement(`SELECT value FROM ${table} WHERE ${keyColumn(table)} = ?`).get(lookupParameter(table, lookup)) as { value: Buffer } | undefined);
    return row === undefined ? undefined : this.decrypt(table, 'value', lookup, row.value);
  }

  /** Encrypts and writes the value column of a `store_info` or `meta` row. */
  private writeRow(table: 'store_info' | 'meta', lookup: Buffer, plaintext: Buffer): void {
    const value = this.encrypt(table, 'value', lookup, plaintext);
    this.query(() =>
      this.statement(`INSERT INTO ${table} (${keyColumn(table)}, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value`).run(lookupParameter(table, lookup), value),
    );
  }

  private deleteRow(table: Table, lookup: Buffer): boolean {
    const changes = this.query(() => this.statement(`DELETE FROM ${table} WHERE ${keyColumn(table)} = ?`).run(lookupParameter(table, lookup)).changes);
    if (changes > 0) this.bumpCounter();
    return changes > 0;
  }

  /** Increments the persisted counter; called inside the transaction of the change it counts. */
  private bumpCounter(): void {
    this.writeRow('store_info', Buffer.from('change_counter'), encodeCounter(this.loadCounter() + 1n));
  }

  private loadCounter(): bigint {
    const plaintext = this.readRow('store_info', Buffer.from('change_counter'));
    if (plaintext === undefined || plaintext.length !== 8) {
      throw new CasError('DATABASE_ERROR', `Database ${this.paths.database} has no valid change counter`);
    }
    return plaintext.readBigUInt64BE(0);
  }

  private checkSchema(): void {
    const quick = this.query(() => this.db.pragma('quick_check', { simple: true }));
    if (quick !== 'ok') {
      throw new CasError('DATABASE_ERROR', `Database ${this.paths.database} is damaged: quick_check reports ${String(quick)}`);
    }
    const applicationId = this.query(() => this.db.pragma('application_id', { simple: true }));
    const userVersion = this.query(() => this.db.pragma('user_version', { simple: true }));
    if (applicationId !== APPLICATION_ID) {
      throw new CasError('DATABASE_ERROR', `File ${this.paths.database} is not a CAS database (application_id ${String(applicationId)})`);
    }
    if (userVersion !== SCHEMA_VERSION) {
      throw new CasError('DATABASE_ERROR', `Database ${this.paths.database} has schema version ${String(userVersion)}; this build reads version ${SCHEMA_VERSION}`);
    }
  }

  private checkKey(): void {
    let plaintext: Buffer | undefined;
    try {
      plaintext = this.readRow('store_info', Buffer.from('key_check'));
    } catch (error) {
      if (isCasError(error, 'DECRYPTION_FAILED')) {
        throw new CasError(
          'DECRYPTION_FAILED',
          `Decryption failed for database ${this.paths.database}: the key that platform ${this.platformId} unwrapped from ${this.paths.keyStore} is not this database's key ` +
            '(the key store belongs to another database or is older than a key rotation, for example one made when this platform was removed)',
          { cause: error, details: { platformId: this.platformId } },
        );
      }
      throw error;
    }
    if (plaintext === undefined || !plaintext.equals(KEY_CHECK_PLAINTEXT)) {
      throw new CasError('DECRYPTION_FAILED', `Database ${this.paths.database} has no valid key check value`);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new CasError('DATABASE_ERROR', `Database ${this.paths.database} is closed`);
  }

  private assertWritable(operation: string): void {
    this.assertOpen();
    if (this.readOnly) throw new CasError('DATABASE_ERROR', `${operation} failed: database ${this.paths.database} is open read-only`);
    this.writeGate.assertInsideWriter(operation);
  }

  /**
   * Returns the prepared statement for `sql`, preparing it on first use. Preparing parses and plans the SQL
   * on every call, which cost about a tenth of a session write's CPU time before statements were kept.
   */
  private statement(sql: string): Database.Statement {
    let prepared = this.statements.get(sql);
    if (prepared === undefined) {
      prepared = this.db.prepare(sql);
      this.statements.set(sql, prepared);
    }
    return prepared;
  }

  private query<T>(fn: () => T): T {
    this.assertOpen();
    try {
      return fn();
    } catch (error) {
      throw isCasError(error) ? error : toDatabaseError(error, `Query on ${this.paths.database} failed`);
    }
  }
}

/**
 * Opens `path` with the store's settings. A read-write connection takes SQLite's exclusive lock for its whole
 * life, so a second process (a second CAS on the same data directory) fails to open instead of writing beside it.
 */
function openSqlite(path: string, readOnly: boolean, busyTimeoutMs: number): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: readOnly, fileMustExist: true });
  } catch (error) {
    throw toDatabaseError(error, `Cannot open database ${path}`);
  }
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    if (!readOnly) {
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      // FULL syncs the WAL on every commit, so a committed change survives power loss.
      db.pragma('synchronous = FULL');
    }
    db.pragma('temp_store = MEMORY');
    db.pragma('foreign_keys = ON');
  } catch (error) {
    db.close();
    throw toDatabaseError(error, `Cannot open database ${path}`);
  }
  return db;
}

/** AAD of an encrypted cell: `cas/v1/<table>/<column>/<hex of the row key>`. */
function cellAad(table: Table, column: Column, lookup: Buffer): Buffer {
  return Buffer.from(`cas/v1/${table}/${column}/${lookup.toString('hex')}`, 'ascii');
}

/** True when `key` decrypts the key check value of `db`. */
function keyCheckPasses(db: Database.Database, key: Buffer): boolean {
  let row: { value: Buffer } | undefined;
  try {
    row = db.prepare('SELECT value FROM store_info WHERE name = ?').get('key_check') as { value: Buffer } | undefined;
  } catch (error) {
    throw toDatabaseError(error, `Cannot read the key check value of database ${db.name}`);
  }
  if (row === undefined) return false;
  const subkeys = deriveStoreSubkeys(key);
  try {
    return decryptValue(subkeys.valueEncryption, cellAad('store_info', 'value', Buffer.from('key_check', 'ascii')), row.value, 'key check').equals(KEY_CHECK_PLAINTEXT);
  } catch (error) {
    if (isCasError(error, 'DECRYPTION_FAILED')) return false;
    throw error;
  } finally {
    for (const subkey of Object.values(subkeys)) subkey.fill(0);
  }
}

function keyColumn(table: Table): string {
  return table === 'store_info' ? 'name' : 'lookup';
}

function lookupParameter(table: Table, lookup: Buffer): Buffer | string {
  return table === 'store_info' ? lookup.toString('ascii') : lookup;
}

function encodeCounter(value: bigint): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(value);
  return bytes;
}

function parseSession(plaintext: Buffer, database: string): SessionRecord {
  let record: unknown;
  try {
    record = JSON.parse(plaintext.toString('utf8'));
  } catch (error) {
    throw new CasError('DATABASE_ERROR', `A session row in ${database} decrypted to invalid JSON`, { cause: error });
  }
  if (typeof record !== 'object' || record === null || typeof (record as { name?: unknown }).name !== 'string') {
    throw new CasError('DATABASE_ERROR', `A session row in ${database} decrypted to JSON without a session name`);
  }
  return record as SessionRecord;
}

function toDatabaseError(error: unknown, message: string): CasError {
  if (isCasError(error)) return error;
  if ((error as { code?: unknown }).code === 'SQLITE_BUSY') {
    return new CasError(
      'DATABASE_ERROR',
      `${message}: the database is locked by another process. Only one CAS may serve a data directory; stop the other process first.`,
      { cause: error },
    );
  }
  return new CasError('DATABASE_ERROR', `${message}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}
