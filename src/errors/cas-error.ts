/**
 * The one error type of the project. Every failure that crosses a module boundary is a CasError with a
 * stable code from the closed set below; `src/errors/http-status.ts` maps codes to HTTP status once and
 * `src/errors/exit-codes.ts` maps them to process exit codes once.
 *
 * Messages say what failed, on which value, and what to do next. They never contain secret values.
 * `details` carries structured fields (key paths, expected and actual values) for API bodies and logs.
 */
export const ERROR_CODES = [
  // Input and request errors
  'INVALID_ARGUMENT', // a command-line flag or request field is invalid
  'BODY_TOO_LARGE',
  'SESSION_INVALID', // the session document fails parsing or validation
  'SESSION_NOT_FOUND',
  'SESSION_EXISTS',
  'SESSION_CONFLICT', // stale or missing predecessor
  'SECRET_REFERENCE_INVALID', // unknown secret, bad placeholder, cyclic import, export not allowed
  'SERVICE_NOT_FOUND',
  'NOT_FOUND',
  // Identity and access
  'CLIENT_CERT_MISSING',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'ALREADY_PROVISIONED',
  'NOT_PROVISIONED',
  'PROVISIONING_TOKEN_INVALID',
  'SERVER_CERT_MISMATCH', // pinned certificate differs from the one presented
  'SERVER_NOT_PINNED',
  // Attestation
  'EVIDENCE_INVALID', // malformed evidence or bad signature
  'EVIDENCE_REPLAYED',
  'NONCE_INVALID', // unknown, used or expired nonce
  'ATTESTATION_REJECTED', // evidence is genuine but does not satisfy the session policy
  'SIMULATION_NOT_ALLOWED',
  'COLLATERAL_INVALID',
  'COLLATERAL_EXPIRED',
  'COLLATERAL_UNAVAILABLE',
  'CERT_CHAIN_INVALID',
  'CERT_REVOKED',
  'TCB_NOT_MATCHED',
  // Storage, key store, platforms and snapshots
  'KEY_STORE_NO_ENTRY', // no wrapped database key for this platform
  'KEY_STORE_INVALID',
  'DECRYPTION_FAILED',
  'DATABASE_ERROR',
  'PLATFORM_KEY_ERROR',
  'PLATFORM_NOT_REGISTERED',
  'SNAPSHOT_FAILED',
  'SNAPSHOT_INVALID',
  'RESTORE_TARGET_NOT_EMPTY',
  // Audit log
  'AUDIT_APPEND_FAILED',
  'AUDIT_INTEGRITY',
  'AUDIT_WRONG_CAS',
  'AUDIT_TRUNCATED',
  'AUDIT_GAP',
  'AUDIT_PARTIAL_LINE',
  // Service state
  'NOT_PRIMARY', // this instance is a standby or lost its lease
  'UNAVAILABLE',
  'CONFIG_INVALID', // server settings fail validation
  'CONNECTION_FAILED',
  'TIMEOUT',
  // Kubernetes plugin
  'KUBE_NAMESPACE_NOT_FOUND',
  'KUBE_API_ERROR',
  'KUBE_PULL_SECRET_MISSING',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class CasError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CasError';
    this.code = code;
    this.details = options?.details;
  }
}

export function isCasError(error: unknown, code?: ErrorCode): error is CasError {
  return error instanceof CasError && (code === undefined || error.code === code);
}

/** Wraps an unknown thrown value as a CasError with the given code, keeping the original as `cause`. */
export function toCasError(error: unknown, code: ErrorCode, message: string): CasError {
  if (error instanceof CasError) return error;
  return new CasError(code, `${message}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}
