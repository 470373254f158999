import type { ErrorCode } from './cas-error.js';

/**
 * Process exit codes, the only place where error codes become exit statuses. Documented in
 * docs/exit-codes.md; scripts rely on them, so a code never changes meaning.
 */
export const EXIT = {
  OK: 0,
  FAILURE: 1, // any error without a more specific code below
  USAGE: 2, // invalid command-line arguments
  SNAPSHOT_FAILED: 20, // `cas serve` stops because a snapshot could not be written
  AUDIT_INTEGRITY: 30, // `cas audit verify`: a hash or signature does not verify
  AUDIT_WRONG_CAS: 31, // `cas audit verify`: the audit key is not linked to the given CAS
  AUDIT_TRUNCATED: 32, // `cas audit verify`: the CAS head is ahead of the files
  AUDIT_GAP: 33, // `cas audit verify`: a sequence number is missing or out of order
  AUDIT_PARTIAL_LINE: 34, // `cas audit verify`: the last line is incomplete (a crash during a write)
  AUDIT_APPEND_FAILED: 35, // `cas serve` stops because the audit log cannot be written
  KEY_STORE_NO_ENTRY: 40, // `cas serve`: this platform is not registered in the key store
  NOT_PROVISIONED: 41, // `kubectl provision cas --is-provisioned`: not provisioned (exit 1 is used there)
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: EXIT.USAGE,
  SNAPSHOT_FAILED: EXIT.SNAPSHOT_FAILED,
  AUDIT_INTEGRITY: EXIT.AUDIT_INTEGRITY,
  AUDIT_WRONG_CAS: EXIT.AUDIT_WRONG_CAS,
  AUDIT_TRUNCATED: EXIT.AUDIT_TRUNCATED,
  AUDIT_GAP: EXIT.AUDIT_GAP,
  AUDIT_PARTIAL_LINE: EXIT.AUDIT_PARTIAL_LINE,
  AUDIT_APPEND_FAILED: EXIT.AUDIT_APPEND_FAILED,
  KEY_STORE_NO_ENTRY: EXIT.KEY_STORE_NO_ENTRY,
};

export function exitCodeFor(code: ErrorCode): number {
  return BY_CODE[code] ?? EXIT.FAILURE;
}
