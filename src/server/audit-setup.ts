import { createPrivateKey } from 'node:crypto';
import { AuditLog, createAuditKeyPair, issueAuditCertificate, type AuditEventInput, type AuditHead } from '../audit/index.js';
import { CasError, isCasError, toCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasDatabase } from '../store/index.js';
import type { KeyAndCertificate } from '../tls/certificates.js';
import type { CommitChange } from './provisioning.js';

const AUDIT_SIGNER_META = 'audit.signer';
const AUDIT_HEAD_META = 'audit.head';
const AUDIT_HMAC_LABEL = 'cas/v1/app/audit-hmac';

/**
 * Opens the audit log with this CAS's audit key. The key and its certificate, issued by the CAS identity
 * key, are created on first start and kept in the encrypted database. The HMAC key is derived from the
 * database key. The head stored in the database lets `AuditLog.open` detect a truncated log.
 */
export async function openServerAudit(options: {
  db: CasDatabase;
  casIdentity: KeyAndCertificate;
  path: string;
  logger: Logger;
}): Promise<{ audit: AuditLog; auditCertificatePem: string }> {
  const { db, casIdentity } = options;
  let signer = readSigner(db);
  if (signer === undefined) {
    const pair = createAuditKeyPair();
    const certificatePem = await issueAuditCertificate({
      casKey: createPrivateKey(casIdentity.privateKeyPem),
      casCertPem: casIdentity.certificatePem,
      auditPublicKey: pair.publicKey,
    });
    signer = { privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), certificatePem };
    const stored = signer;
    await db.writeGate.run(() => db.putMeta(AUDIT_SIGNER_META, Buffer.from(JSON.stringify(stored), 'utf8')));
  }

  const head = readHead(db);
  const audit = await AuditLog.open({
    path: options.path,
    signer: { privateKey: createPrivateKey(signer.privateKeyPem), certificateChainPem: [signer.certificatePem, casIdentity.certificatePem] },
    hmacKey: db.deriveApplicationKey(AUDIT_HMAC_LABEL),
    logger: options.logger,
    ...(head === undefined ? {} : { head }),
  });
  return { audit, auditCertificatePem: signer.certificatePem };
}

/**
 * Returns the CommitChange that every state change uses: append the audit entry (written and fsynced),
 * then commit the change and the new audit head in one database transaction. If the append fails, nothing
 * is committed and the request fails with AUDIT_APPEND_FAILED (HTTP 503).
 */
export function createCommit(db: CasDatabase, audit: { append(entry: AuditEventInput): Promise<AuditHead> }): CommitChange {
  return async (entry, write) =>
    db.writeGate.run(async () => {
      let head: AuditHead;
      try {
        head = await audit.append(entry);
      } catch (error) {
        if (isCasError(error, 'AUDIT_APPEND_FAILED')) throw error;
        throw toCasError(error, 'AUDIT_APPEND_FAILED', 'the audit entry could not be written, so the change was not made');
      }
      const result = db.transaction(() => {
        const value = write();
        storeHeadIfNewer(db, head);
        return value;
      });
      return { result, head };
    });
}

/** Per database: the newest head waiting to be stored, and the store that will write it. */
interface HeadStoreState {
  latest: AuditHead;
  /** A store that has not started yet; it writes whatever `latest` is when it starts. */
  pending: Promise<void> | undefined;
  /** The store in progress, which may have read an older `latest`. */
  running: Promise<void> | undefined;
}

const headStores = new WeakMap<CasDatabase, HeadStoreState>();

/**
 * Stores the head after an append that has no database change of its own (start, stop, release, snapshot).
 * Resolves once a database commit that started after this call has stored this head or a newer one.
 * Concurrent callers share one commit (and so one fsync), the way their audit appends share one: each
 * stored head is a separate SQLite transaction with `synchronous = FULL`, which would otherwise cost every
 * configuration release an fsync of its own. A head older than the stored one is never written back, so a
 * release that waited behind a session change cannot move the head backwards.
 */
export function storeAuditHead(db: CasDatabase, head: AuditHead): Promise<void> {
  let state = headStores.get(db);
  if (state === undefined) {
    state = { latest: head, pending: undefined, running: undefined };
    headStores.set(db, state);
  } else if (head.seq > state.latest.seq) {
    state.latest = head;
  }
  if (state.pending !== undefined) return state.pending;

  const current = state;
  const previous = current.running;
  // Assigned before the body below first reads it: the body starts with an await.
  let store!: Promise<void>;
  store = (async () => {
    await previous?.catch(() => undefined);
    current.pending = undefined;
    current.running = store;
    const head = current.latest;
    try {
      await db.writeGate.run(() => storeHeadIfNewer(db, head));
    } finally {
      if (current.running === store) current.running = undefined;
    }
  })();
  current.pending = store;
  return store;
}

/**
 * Stores `head` as the audit head unless the stored one is at the same or a later seq, so that a change
 * committed after a newer entry's head cannot move the head backwards. Runs inside a writer.
 */
export function storeHeadIfNewer(db: CasDatabase, head: AuditHead): void {
  const stored = readHead(db);
  if (stored !== undefined && stored.seq >= head.seq) return;
  db.putMeta(AUDIT_HEAD_META, Buffer.from(JSON.stringify(head), 'utf8'));
}

function readSigner(db: CasDatabase): { privateKeyPem: string; certificatePem: string } | undefined {
  const stored = db.getMeta(AUDIT_SIGNER_META);
  if (stored === undefined) return undefined;
  const parsed = JSON.parse(stored.toString('utf8')) as { privateKeyPem?: unknown; certificatePem?: unknown };
  if (typeof parsed.privateKeyPem !== 'string' || typeof parsed.certificatePem !== 'string') {
    throw new CasError('DATABASE_ERROR', 'the audit signer stored in the database is malformed');
  }
  return { privateKeyPem: parsed.privateKeyPem, certificatePem: parsed.certificatePem };
}

function readHead(db: CasDatabase): AuditHead | undefined {
  const stored = db.getMeta(AUDIT_HEAD_META);
  return stored === undefined ? undefined : (JSON.parse(stored.toString('utf8')) as AuditHead);
}
