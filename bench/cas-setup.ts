import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import type { AuditLog } from '../src/audit/index.js';
import { FILE_NAMES } from '../src/config/defaults.js';
import { silentLogger } from '../src/logging/logger.js';
import { parseSession, sessionHash, type Session } from '../src/policy/index.js';
import { createImportResolver, generateSecrets } from '../src/secrets/index.js';
import { createCommit, openServerAudit } from '../src/server/audit-setup.js';
import { loadOrCreateCasIdentity } from '../src/server/cas-identity.js';
import type { ClientKey } from '../src/server/client-identity.js';
import { GroupCommit } from '../src/server/group-commit.js';
import { SessionService } from '../src/server/sessions.js';
import { CasDatabase, openPlatform, type SessionRecord } from '../src/store/index.js';
import { keyHashOfSpki, type KeyAndCertificate } from '../src/tls/certificates.js';

/** The storage half of a CAS, opened in this process the way `cas serve` opens it, without HTTP. */
export interface StorageCas {
  db: CasDatabase;
  audit: AuditLog;
  identity: KeyAndCertificate;
  sessions: SessionService;
  group: GroupCommit;
  close(): Promise<void>;
}

/**
 * Opens (or creates) the encrypted database in `dataDir` with the simulation platform key in `platformDir`,
 * the CAS identity and the audit log at the server's default path. Wires them into a SessionService as
 * cas serve does, so session changes go through the group commit.
 */
export async function openStorageCas(dataDir: string, platformDir: string): Promise<StorageCas> {
  const logger = silentLogger();
  const platform = await openPlatform({ mode: 'simulation', platformDir, logger });
  const db = CasDatabase.open({ dataDir, platform, platformDir, logger });
  const identity = await loadOrCreateCasIdentity(db, '127.0.0.1', logger);
  const { audit } = await openServerAudit({ db, casIdentity: identity, path: join(dataDir, 'audit', FILE_NAMES.auditLog), logger });
  const group = new GroupCommit(db, audit, logger);
  const sessions = new SessionService(db, createCommit(db, audit), group, logger);
  return {
    db,
    audit,
    group,
    identity,
    sessions,
    async close() {
      await group.drain();
      await audit.close();
      db.close();
    },
  };
}

/** Creates a client key (the TLS identity of a session owner) from a fresh P-256 key pair. */
export function newClientKey(): ClientKey {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
  return { spkiDer, keyHash: keyHashOfSpki(spkiDer) };
}

/**
 * Returns a small session: one service whose environment takes a generated password, with attestation mode
 * `none` so that CAS accepts simulated evidence for it.
 */
export function sessionText(name: string): string {
  return `name: ${name}
version: "0.3"
services:
  - name: app
    command: /usr/bin/app --listen 0.0.0.0:8080
    environment:
      DB_PASSWORD: $$SCONE::db_password$$
      LOG_LEVEL: info
secrets:
  - name: db_password
    kind: ascii
    size: 24
security:
  attestation:
    mode: none
`;
}

/**
 * Builds the record that SessionService.create stores for `text` (parsed session, generated secrets, session
 * hash), without writing it. Used to seed many sessions in a few transactions.
 */
export async function sessionRecord(text: string, creator: ClientKey): Promise<SessionRecord> {
  return recordOf(parseSession(text), text, creator);
}

/**
 * Builds the records of many small sessions (sessionText) named `${prefix}${first}` onwards. The session is
 * parsed once; each record gets a copy of the parsed form under its own name, freshly generated secrets and
 * its own session hash, so seeding 100,000 sessions is not dominated by YAML parsing.
 */
export async function sessionRecords(prefix: string, first: number, count: number, creator: ClientKey): Promise<SessionRecord[]> {
  const template = parseSession(sessionText(`${prefix}${first}`));
  const records: SessionRecord[] = [];
  for (let i = first; i < first + count; i++) {
    const session = structuredClone(template);
    session.name = `${prefix}${i}`;
    records.push(await recordOf(session, sessionText(session.name), creator));
  }
  return records;
}

async function recordOf(session: Session, text: string, creator: ClientKey): Promise<SessionRecord> {
  const secrets = await generateSecrets(session, undefined, createImportResolver(() => undefined));
  const now = new Date().toISOString();
  return { name: session.name, hash: sessionHash(session), text, creatorKeyHash: creator.keyHash, createdAt: now, updatedAt: now, secrets, data: session };
}
