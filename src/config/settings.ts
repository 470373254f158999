import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { CasError } from '../errors/cas-error.js';
import { DEFAULTS } from './defaults.js';

/**
 * Settings of `cas serve`: one zod schema, checked once at start-up. Every failure names the settings key
 * (and the command-line flag it comes from) so an operator can fix it without reading code.
 */

const listenSchema = z.string().transform((text, ctx) => {
  const parsed = parseListenAddress(text);
  if (parsed === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected HOST:PORT with a port from 0 to 65535, got "${text}"` });
    return z.NEVER;
  }
  return parsed;
});

const nonEmptyPath = z.string().min(1, 'must not be empty');
const httpUrl = z.string().regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, 'expected an http:// or https:// URL');

/**
 * Collateral sources and trust anchors of the hardware evidence verifiers; see docs/attestation.md. The
 * DCAP API key is not a setting: it comes from CAS_DCAP_API_KEY or the file named here, and is never logged.
 */
const hardwareAttestationSettings = {
  /** Intel PCS base URL (default https://api.trustedservices.intel.com); excludes pccsUrl. */
  pcsUrl: httpUrl.optional(),
  /** PCCS base URL, used instead of Intel PCS. */
  pccsUrl: httpUrl.optional(),
  dcapApiKeyFile: nonEmptyPath.optional(),
  /** PEM of the trusted Intel SGX Root CA; the embedded Intel certificate when absent. */
  intelRootCaFile: nonEmptyPath.optional(),
  /** PEM of the pinned AMD ARK; SEV-SNP reports are rejected without it. */
  amdArkFile: nonEmptyPath.optional(),
  /** AMD KDS base URL (default https://kdsintf.amd.com). */
  kdsUrl: httpUrl.optional(),
};

export const serverSettingsSchema = z
  .object({
    dataDir: nonEmptyPath,
    listen: listenSchema,
    platformDir: nonEmptyPath,
    mode: z.enum(['simulation', 'hardware']),
    /** Seconds between two snapshots; 0 is not allowed, use --no-snapshots. */
    snapshotIntervalSeconds: z.number().int().min(1).max(86_400),
    snapshotDir: nonEmptyPath,
    snapshotsEnabled: z.boolean(),
    /** Retention: the newest N valid snapshots are kept (at least 1). */
    snapshotKeepLast: z.number().int().min(1).max(100_000),
    /** Retention: the newest snapshot of each of the last D days is kept as well (0: none). */
    snapshotKeepDays: z.number().int().min(0).max(36_500),
    auditLog: nonEmptyPath,
    /** A provisioning token chosen by the deployer; when absent, CAS generates one on first start. */
    provisioningTokenFile: nonEmptyPath.optional(),
    /** Upper bound of a request body in bytes; larger bodies are rejected with 413. */
    bodyLimitBytes: z.number().int().min(1024).max(64 * 1024 * 1024),
    /** Lifetime of a configuration nonce in seconds. */
    nonceTtlSeconds: z.number().int().min(1).max(3600),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** Primary lease (high availability): a lock-file directory beside the database, a Kubernetes Lease, or none. */
    lease: z.enum(['lockfile', 'kubernetes', 'none']),
    /** Lease period in seconds: a primary that cannot renew within it stops serving; a standby then takes over. */
    leaseDurationSeconds: z.number().int().min(1).max(3600),
    /** Name of the Kubernetes Lease object (--lease kubernetes). */
    leaseName: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'expected a DNS label: lower-case letters, digits and -, at most 63 characters'),
    ...hardwareAttestationSettings,
  })
  .strict();

export type ServerSettings = z.infer<typeof serverSettingsSchema>;
export type ListenAddress = { host: string; port: number };

/** Raw settings as the CLI or a test supplies them: every key optional, defaults filled in below. */
export interface ServerSettingsInput {
  dataDir?: string;
  listen?: string;
  platformDir?: string;
  mode?: string;
  snapshotIntervalSeconds?: number | string;
  snapshotDir?: string;
  snapshotsEnabled?: boolean;
  snapshotKeepLast?: number | string;
  snapshotKeepDays?: number | string;
  auditLog?: string;
  provisioningTokenFile?: string;
  bodyLimitBytes?: number;
  nonceTtlSeconds?: number;
  logLevel?: string;
  lease?: string;
  leaseDurationSeconds?: number | string;
  leaseName?: string;
  pcsUrl?: string;
  pccsUrl?: string;
  dcapApiKeyFile?: string;
  intelRootCaFile?: string;
  amdArkFile?: string;
  kdsUrl?: string;
}

/** Command-line flag for each settings key, so that validation messages name what the operator typed. */
const FLAG_FOR_KEY: Record<string, string> = {
  dataDir: '--data-dir',
  listen: '--listen',
  platformDir: '--platform-dir',
  mode: '--mode',
  snapshotIntervalSeconds: '--snapshot-interval',
  snapshotDir: '--snapshot-dir',
  snapshotsEnabled: '--no-snapshots',
  snapshotKeepLast: '--snapshot-keep',
  snapshotKeepDays: '--snapshot-keep-days',
  auditLog: '--audit-log',
  provisioningTokenFile: '--provisioning-token-file',
  logLevel: 'CAS_LOG_LEVEL',
  lease: '--lease',
  leaseDurationSeconds: '--lease-duration',
  leaseName: '--lease-name',
  pcsUrl: '--pcs-url',
  pccsUrl: '--pccs-url',
  dcapApiKeyFile: '--dcap-api-key-file',
  intelRootCaFile: '--intel-root-ca',
  amdArkFile: '--amd-ark',
  kdsUrl: '--kds-url',
};

export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;
export const DEFAULT_NONCE_TTL_SECONDS = 60;

/**
 * Fills in defaults, validates and resolves paths to absolute ones. Throws CONFIG_INVALID listing every
 * invalid key with its flag and the reason.
 */
export function loadServerSettings(input: ServerSettingsInput, cwd: string = process.cwd()): ServerSettings {
  const dataDir = input.dataDir ?? DEFAULTS.dataDir;
  const candidate = {
    dataDir,
    listen: input.listen ?? `${DEFAULTS.listenHost}:${DEFAULTS.listenPort}`,
    platformDir: input.platformDir ?? DEFAULTS.platformDir(),
    mode: input.mode ?? DEFAULTS.mode,
    snapshotIntervalSeconds: numberInput(input.snapshotIntervalSeconds, DEFAULTS.snapshotIntervalSeconds),
    snapshotDir: input.snapshotDir ?? join(dataDir, DEFAULTS.snapshotSubdir),
    snapshotsEnabled: input.snapshotsEnabled ?? true,
    snapshotKeepLast: numberInput(input.snapshotKeepLast, DEFAULTS.snapshotKeepLast),
    snapshotKeepDays: numberInput(input.snapshotKeepDays, DEFAULTS.snapshotKeepDays),
    auditLog: input.auditLog ?? join(dataDir, DEFAULTS.auditSubdir, 'cas_audit.log'),
    provisioningTokenFile: input.provisioningTokenFile,
    bodyLimitBytes: input.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    nonceTtlSeconds: input.nonceTtlSeconds ?? DEFAULT_NONCE_TTL_SECONDS,
    logLevel: input.logLevel ?? process.env['CAS_LOG_LEVEL'] ?? 'info',
    lease: input.lease ?? DEFAULTS.lease,
    leaseDurationSeconds: numberInput(input.leaseDurationSeconds, DEFAULTS.leaseDurationSeconds),
    leaseName: input.leaseName ?? DEFAULTS.leaseName,
  };
  if (candidate.provisioningTokenFile === undefined) delete candidate.provisioningTokenFile;

  const result = serverSettingsSchema.safeParse({ ...candidate, ...hardwareAttestationInput(input) });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.') || '(settings)';
      const flag = FLAG_FOR_KEY[key];
      return { key, flag, message: issue.message };
    });
    const text = problems.map((p) => `${p.key}${p.flag ? ` (${p.flag})` : ''}: ${p.message}`).join('; ');
    throw new CasError('CONFIG_INVALID', `invalid server settings: ${text}`, { details: { problems } });
  }

  const settings = result.data;
  const absolute = (path: string): string => (isAbsolute(path) ? path : resolve(cwd, path));
  return {
    ...settings,
    dataDir: absolute(settings.dataDir),
    platformDir: absolute(settings.platformDir),
    snapshotDir: absolute(settings.snapshotDir),
    auditLog: absolute(settings.auditLog),
    ...(settings.provisioningTokenFile === undefined ? {} : { provisioningTokenFile: absolute(settings.provisioningTokenFile) }),
    ...(settings.dcapApiKeyFile === undefined ? {} : { dcapApiKeyFile: absolute(settings.dcapApiKeyFile) }),
    ...(settings.intelRootCaFile === undefined ? {} : { intelRootCaFile: absolute(settings.intelRootCaFile) }),
    ...(settings.amdArkFile === undefined ? {} : { amdArkFile: absolute(settings.amdArkFile) }),
  };
}

/** Returns the hardware attestation keys that the input sets; absent keys stay absent (no defaults here). */
function hardwareAttestationInput(input: ServerSettingsInput): Partial<Record<keyof typeof hardwareAttestationSettings, string>> {
  const out: Partial<Record<keyof typeof hardwareAttestationSettings, string>> = {};
  for (const key of Object.keys(hardwareAttestationSettings) as Array<keyof typeof hardwareAttestationSettings>) {
    const value = input[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (host 127.0.0.1); returns undefined when malformed. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[3]);
  if (!Number.isInteger(port) || port > 65_535) return undefined;
  const host = match[1] ?? (match[2] === '' ? DEFAULTS.listenHost : match[2]);
  if (host === undefined) return undefined;
  return { host, port };
}

function numberInput(value: number | string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  return typeof value === 'string' ? parseNumber(value) : value;
}

function parseNumber(text: string): number {
  return /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
}
