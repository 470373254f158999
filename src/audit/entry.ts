import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ERROR_CODES } from '../errors/cas-error.js';

/**
 * The audit entry format: one JSON object per line, validated by a closed zod schema. No field is
 * free-form text, so a secret value cannot reach the log through an entry: names are identifiers, digests
 * are hex, reasons are error codes, and values that must be correlated are HMACs (see `auditHmac`).
 *
 * Byte format (documented in docs/audit-log.md):
 * - canonical JSON: object keys sorted by UTF-16 code units (as RFC 8785 does), no whitespace, strings and
 *   integers as JSON.stringify writes them;
 * - `hash` = lower-case hex SHA-256 of the canonical JSON of the entry without `hash` and `sig`;
 * - `sig` = lower-case hex ECDSA P-256 signature (IEEE P1363 `r || s`, 64 bytes) with SHA-256 over the same
 *   bytes, made with the audit key;
 * - the line = canonical JSON of the whole entry followed by one `\n`. A line whose bytes differ from the
 *   canonical form of what it parses to is invalid, so a change that leaves the parsed JSON equal (extra
 *   whitespace, an escaped character, a reordered key) is still detected.
 */

export const AUDIT_FORMAT_VERSION = 1;

/** `prev` of the first entry of a log: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

export const AUDIT_EVENTS = [
  'cas.started',
  'cas.stopped',
  'cas.provisioned',
  'cas.settings.updated',
  'session.created',
  'session.updated',
  'session.deleted',
  'session.read',
  'service.attested',
  'service.rejected',
  'config.released',
  'backup.registered',
  'backup.removed',
  'backup.registrar.authorized',
  'backup.registrar.revoked',
  'snapshot.created',
  'restore',
  'log.rotated',
] as const;

export type AuditEventType = (typeof AUDIT_EVENTS)[number];

const hexSha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex characters');
const hmacValue = z.string().regex(/^hmac-sha256:[0-9a-f]{64}$/, 'expected hmac-sha256:<64 hex characters>');
/** Session, service, snapshot and file names: identifiers, never text. Session names may have `/` namespaces. */
const AUDIT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,1023}$/;
const name = z.string().regex(AUDIT_NAME, 'expected a name of letters, digits and _.:/-');

/**
 * Checks that a value can appear as a name in an entry. A name that a client sent and that failed validation
 * (for example in a rejected request) must be left out or replaced by its `auditHmac` instead.
 */
export function isAuditName(value: string): boolean {
  return AUDIT_NAME.test(value);
}

export const EVIDENCE_TYPES = ['sgx-dcap', 'tdx', 'sev-snp', 'simulated'] as const;

/**
 * TCB status values of Intel's TCB Info (SGX and TDX), `NotEvaluated` for SEV-SNP, whose vendor publishes no
 * TCB status, and `NotApplicable` for simulated evidence.
 */
export const TCB_STATUSES = [
  'UpToDate',
  'SWHardeningNeeded',
  'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded',
  'OutOfDate',
  'OutOfDateConfigurationNeeded',
  'TDRelaunchAdvised',
  'TDRelaunchAdvisedConfigurationNeeded',
  'Revoked',
  'NotEvaluated',
  'NotApplicable',
] as const;

/** Security advisory ids, such as `INTEL-SA-00615`. */
const advisories = z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/)).max(64);

/** Measurement name to lower-case hex value, integer or flag (e.g. `mrenclave`, `rtmr0`, `isvsvn`, `debug`). */
const measurements = z
  .record(
    z.string().regex(/^[a-z][a-zA-Z0-9_]{0,31}$/),
    z.union([z.string().regex(/^[0-9a-f]{1,256}$/), z.int().nonnegative(), z.boolean()]),
  )
  .refine((value) => Object.keys(value).length <= 32, 'at most 32 measurements');

export const auditActorSchema = z.discriminatedUnion('kind', [
  /** The CAS itself: start, stop, snapshots, rotation. */
  z.strictObject({ kind: z.literal('cas') }),
  /** A TLS client, by the SHA-256 of its public key (SubjectPublicKeyInfo DER). */
  z.strictObject({ kind: z.literal('client'), keyHash: hexSha256 }),
  /** A service that presented evidence for the named session and service (attested, or claimed if rejected). */
  z.strictObject({ kind: z.literal('service'), session: name, service: name }),
  /** An operator with access to the data directory (restore). */
  z.strictObject({ kind: z.literal('operator') }),
]);

export const auditTargetSchema = z.strictObject({
  session: name.optional(),
  service: name.optional(),
  platformKeyHash: hexSha256.optional(),
  snapshot: name.optional(),
});

const empty = z.strictObject({});
const sessionDetails = z.strictObject({ sessionHash: hexSha256.optional(), predecessor: hexSha256.optional() });

/** Details per event type; every schema is strict, so unknown fields are rejected. */
const DETAILS = {
  'cas.started': z.strictObject({
    mode: z.enum(['simulation', 'hardware']),
    version: z.string().regex(/^[0-9A-Za-z.+-]{1,64}$/),
    /** Bytes of a partial last line that the writer removed when it opened the log. */
    repairedBytes: z.int().positive().optional(),
  }),
  'cas.stopped': z.strictObject({ reason: z.enum(['signal', 'shutdown', 'fatal']) }),
  'cas.provisioned': empty,
  /** Dotted paths of the owner settings that changed (such as `backup.acceptSimulatedEvidence`), never their values. */
  'cas.settings.updated': z.strictObject({ changed: z.array(z.string().regex(/^[a-z][A-Za-z0-9]{0,63}(\.[a-z][A-Za-z0-9]{0,63}){1,3}$/)).min(1).max(64) }),
  'session.created': sessionDetails,
  'session.updated': sessionDetails,
  'session.deleted': sessionDetails,
  'session.read': sessionDetails,
  'service.attested': z.strictObject({
    evidenceType: z.enum(EVIDENCE_TYPES),
    measurements,
    tcbStatus: z.enum(TCB_STATUSES),
    advisories: advisories.optional(),
  }),
  'service.rejected': z.strictObject({
    evidenceType: z.enum(EVIDENCE_TYPES).optional(),
    /** The error code of the rejection, never its message: messages may quote request content. */
    reason: z.enum(ERROR_CODES),
    measurements: measurements.optional(),
    tcbStatus: z.enum(TCB_STATUSES).optional(),
    advisories: advisories.optional(),
  }),
  'config.released': z.strictObject({ configHmac: hmacValue }),
  'backup.registered': empty,
  'backup.removed': empty,
  /** The client key (SHA-256 of its SPKI) that the CAS owner allowed, or no longer allows, to register platforms. */
  'backup.registrar.authorized': z.strictObject({ registrarKeyHash: hexSha256 }),
  'backup.registrar.revoked': z.strictObject({ registrarKeyHash: hexSha256 }),
  'snapshot.created': z.strictObject({ databaseSha256: hexSha256.optional() }),
  'restore': z.strictObject({ databaseSha256: hexSha256.optional() }),
  'log.rotated': z.strictObject({
    previousFile: name,
    previousFirstSeq: z.int().positive(),
    previousLastSeq: z.int().positive(),
  }),
} as const satisfies Record<AuditEventType, z.ZodType>;

const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/;

const commonFields = {
  v: z.literal(AUDIT_FORMAT_VERSION),
  seq: z.int().positive(),
  time: z.iso.datetime(),
  actor: auditActorSchema,
  target: auditTargetSchema.optional(),
  outcome: z.enum(['success', 'failure', 'denied']),
  /** Certificate chain (PEM), audit key certificate first, then the CAS certificate and its issuers. */
  chain: z.array(z.string().regex(PEM_CERTIFICATE)).min(2).max(8).optional(),
  prev: hexSha256,
};

function eventSchema<E extends AuditEventType>(event: E) {
  return z.strictObject({ ...commonFields, event: z.literal(event), details: DETAILS[event] });
}

const EVENT_SCHEMAS = [
  eventSchema('cas.started'),
  eventSchema('cas.stopped'),
  eventSchema('cas.provisioned'),
  eventSchema('cas.settings.updated'),
  eventSchema('session.created'),
  eventSchema('session.updated'),
  eventSchema('session.deleted'),
  eventSchema('session.read'),
  eventSchema('service.attested'),
  eventSchema('service.rejected'),
  eventSchema('config.released'),
  eventSchema('backup.registered'),
  eventSchema('backup.removed'),
  eventSchema('backup.registrar.authorized'),
  eventSchema('backup.registrar.revoked'),
  eventSchema('snapshot.created'),
  eventSchema('restore'),
  eventSchema('log.rotated'),
] as const;

/** An entry before hashing and signing. */
export const unsignedAuditEntrySchema = z.discriminatedUnion('event', EVENT_SCHEMAS);

/** A complete entry as it appears on a line. */
export const auditEntrySchema = z.discriminatedUnion(
  'event',
  EVENT_SCHEMAS.map((schema) => schema.extend({ hash: hexSha256, sig: z.string().regex(/^[0-9a-f]{128}$/) })) as unknown as [
    (typeof EVENT_SCHEMAS)[number],
    ...(typeof EVENT_SCHEMAS)[number][],
  ],
);

export type UnsignedAuditEntry = z.infer<typeof unsignedAuditEntrySchema>;
export type AuditEntry = UnsignedAuditEntry & { hash: string; sig: string };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** The input of `AuditLog.append`. The writer adds `v`, `seq`, `time`, `prev`, `chain`, `hash` and `sig`. */
export type AuditEventInput = DistributiveOmit<UnsignedAuditEntry, 'v' | 'seq' | 'time' | 'prev' | 'chain'>;

/** The latest entry of a log: what the server stores in its database to detect a truncated log. */
export interface AuditHead {
  seq: number;
  hash: string;
}

/**
 * Serialises a JSON value canonically: keys sorted by UTF-16 code units, no whitespace. Properties whose
 * value is undefined are left out, as JSON.stringify does. Only integers are expected; a non-finite number
 * is rejected because JSON cannot represent it.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON cannot represent a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  if (typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot represent a value of type ${typeof value}`);
}

/** Returns the bytes that are hashed and signed: canonical JSON of the entry without `hash` and `sig`. */
export function signedBytes(entry: UnsignedAuditEntry | AuditEntry): Buffer {
  const { hash: _hash, sig: _sig, ...unsigned } = entry as AuditEntry;
  return Buffer.from(canonicalJson(unsigned), 'utf8');
}

export function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Returns the line of an entry, including the final `\n`. */
export function entryLine(entry: AuditEntry): Buffer {
  return Buffer.from(canonicalJson(entry) + '\n', 'utf8');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A line that parsed into a well-formed entry whose `hash` matches its content, or why it did not. */
export type ParsedLine = { ok: true; entry: AuditEntry } | { ok: false; reason: string };

/**
 * Parses one line (without its `\n`) and checks everything that needs no key: valid UTF-8 and JSON,
 * canonical bytes, the schema, and `hash`. The caller checks the signature with the audit key in effect.
 */
export function parseAuditLine(line: Buffer): ParsedLine {
  let text: string;
  let json: unknown;
  try {
    text = utf8.decode(line);
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'the line is not valid UTF-8 JSON' };
  }

  let canonical: string;
  try {
    canonical = canonicalJson(json);
  } catch {
    return { ok: false, reason: 'the line contains a value that canonical JSON cannot represent' };
  }
  if (canonical !== text) return { ok: false, reason: 'the line is not in canonical form' };

  const parsed = auditEntrySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: `the entry does not match the schema at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}` };
  }

  const entry = parsed.data as AuditEntry;
  if (sha256Hex(signedBytes(entry)) !== entry.hash) return { ok: false, reason: 'the hash does not match the entry' };
  return { ok: true, entry };
}
