/** The tamper-evident audit log: entry format, writer, verifier. See docs/audit-log.md. */
export { AuditLog, DEFAULT_MAX_AUDIT_FILE_BYTES, type AuditLogOptions, type AuditRepair, type AuditSigner } from './audit-log.js';
export {
  AUDIT_EVENTS,
  EVIDENCE_TYPES,
  GENESIS_HASH,
  TCB_STATUSES,
  auditEntrySchema,
  canonicalJson,
  isAuditName,
  parseAuditLine,
  type AuditEntry,
  type AuditEventInput,
  type AuditEventType,
  type AuditHead,
} from './entry.js';
export { auditHmac } from './hmac.js';
export { createAuditKeyPair, issueAuditCertificate, type IssueAuditCertificateOptions } from './signing.js';
export { assertAuditIntact, verifyAuditLog, verifyAuditContents, type AuditProblem, type AuditVerification, type VerifyAuditOptions } from './verify.js';
