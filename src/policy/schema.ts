import { z } from 'zod';
import { TOLERANCES } from '../attestation/requirements.js';
import { KEY_TYPES, SECRET_KINDS } from './types.js';

/**
 * The structure of a session file as written (SCONE session language 0.3 plus the `tdx` and `snp`
 * attestation keys). Every object is strict, so an unknown or misspelt key is an error naming its path.
 * Semantic checks that span fields (references, kind-specific keys) live in parse-session.ts.
 *
 * Custom messages are phrased as the expected value: the parser reports "expected <message>".
 */

/** `$VAR`, `${VAR}` or `{{ var }}`: a client-side template variable that was never substituted. */
export const TEMPLATE_VARIABLE = /\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{[^}]*\}\}/;
export const UNRENDERED_TEMPLATE = 'unrendered template variable';

function text(expected: string, pattern?: RegExp) {
  const base = z.string({ error: expected }).superRefine((value, ctx) => {
    const match = TEMPLATE_VARIABLE.exec(value);
    if (match !== null) {
      ctx.addIssue({ code: 'custom', message: UNRENDERED_TEMPLATE, params: { variable: match[0] } });
    }
  });
  return pattern === undefined ? base : base.regex(pattern, { error: expected });
}

export const HEX = (bytes: number) => new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`);
const HEX32 = HEX(32);
const HEX48 = HEX(48);
const HEX8 = HEX(8);

/** At most 256 characters in all, the limit of the API's session name paths (src/server/routes.ts). */
const SESSION_NAME = /^(?=.{1,256}$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(\/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})*$/;
const SIMPLE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const SESSION_NAME_TEXT =
  'a session name: letters, digits, "_", "-" and "." with "/" between namespace levels, not starting with "." or "-", at most 256 characters';
const SIMPLE_NAME_TEXT = 'a name of letters, digits, "_", "-" and "." (at most 128 characters)';

const sessionName = () => text(SESSION_NAME_TEXT, SESSION_NAME);
const simpleName = () => text(SIMPLE_NAME_TEXT, SIMPLE_NAME);
const hex32 = (what: string) => text(`${what}: 64 hexadecimal characters`, HEX32);
const hex48 = (what: string) => text(`${what}: 96 hexadecimal characters`, HEX48);
const hex8 = (what: string) => text(`${what}: 16 hexadecimal characters`, HEX8);

function oneOrMany<T extends z.ZodType>(item: T, expected: string) {
  return z.union([item, z.array(item)], { error: expected });
}

const u16 = (what: string) => z.number({ error: `${what}: an integer from 0 to 65535` }).int().min(0).max(65535);

const signer = z.strictObject({
  mrsigner: hex32('MRSIGNER'),
  isvprodid: u16('ISVPRODID').optional(),
  isvsvn: u16('ISVSVN').optional(),
  isvsvn_min: u16('ISVSVN').optional(),
  isvsvn_max: u16('ISVSVN').optional(),
});

const tdx = z.strictObject({
  mrtd: oneOrMany(hex48('MRTD'), 'MRTD (96 hexadecimal characters) or a list of them').optional(),
  rtmr0: hex48('RTMR0').optional(),
  rtmr1: hex48('RTMR1').optional(),
  rtmr2: hex48('RTMR2').optional(),
  rtmr3: hex48('RTMR3').optional(),
  td_attributes: hex8('TD attributes').optional(),
  xfam: hex8('XFAM').optional(),
});

const snp = z.strictObject({
  measurement: oneOrMany(hex48('measurement'), 'a measurement (96 hexadecimal characters) or a list of them').optional(),
  policy: z
    .union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), text('a hexadecimal policy', /^0x[0-9a-fA-F]{1,13}$/)], {
      error: 'a guest policy: a non-negative integer or a 0x-prefixed hexadecimal number',
    })
    .optional(),
  host_data: hex32('HOST_DATA').optional(),
});

export const attestationVariantSchema = z.strictObject({
  mrenclave: oneOrMany(hex32('MRENCLAVE'), 'MRENCLAVE (64 hexadecimal characters) or a list of them').optional(),
  signer: signer.optional(),
  tdx: tdx.optional(),
  snp: snp.optional(),
});

const environmentKey = /^(\\@\\@)?[A-Za-z_][A-Za-z0-9_.-]*$/;

const service = z.strictObject({
  name: simpleName(),
  command: z.string({ error: 'a command line (string)' }).optional(),
  environment: z
    .record(
      z.string().regex(environmentKey, {
        error: 'an environment variable name (letters, digits, "_", "." and "-", not starting with a digit), optionally prefixed with \\@\\@',
      }),
      z.string({ error: 'a string value (quote numbers and booleans)' }),
    )
    .optional(),
  pwd: z.string({ error: 'an absolute path' }).regex(/^\//, { error: 'an absolute path' }).optional(),
  image_name: simpleName().optional(),
  mrenclaves: z.array(hex32('MRENCLAVE'), { error: 'a list of MRENCLAVE values' }).optional(),
  attestation: oneOrMany(attestationVariantSchema, 'an attestation variant mapping or a list of them').optional(),
});

const exportTarget = z.strictObject({
  session: sessionName().optional(),
  namespace: sessionName().optional(),
  session_hash: hex32('session hash').optional(),
});

const secretImport = z.strictObject({
  session: sessionName(),
  secret: simpleName(),
  session_hash: hex32('session hash').optional(),
});

const stringList = (expected: string) => z.array(z.string({ error: expected }), { error: `a list: ${expected}` });

const secret = z.strictObject({
  name: simpleName(),
  kind: z.enum(SECRET_KINDS, { error: `one of ${SECRET_KINDS.join(', ')}` }).optional(),
  size: z.number({ error: 'a size in bytes (integer)' }).int().min(1).max(65536).optional(),
  value: z.string({ error: 'a string value' }).optional(),
  migrate: z.boolean({ error: 'true or false' }).optional(),
  key_type: z.enum(KEY_TYPES, { error: `one of ${KEY_TYPES.join(', ')}` }).optional(),
  private_key: simpleName().optional(),
  issuer: simpleName().optional(),
  common_name: z.string({ error: 'a common name (string)' }).min(1).max(64).optional(),
  dns: stringList('DNS names').optional(),
  ip: stringList('IP addresses').optional(),
  valid_for: z.string({ error: 'a duration such as 90d' }).regex(/^[1-9][0-9]{0,6}[smhd]$/, {
    error: 'a duration: a number followed by s, m, h or d (for example 90d)',
  }).optional(),
  endpoint: z.enum(['server', 'client'], { error: 'server or client' }).optional(),
  export: oneOrMany(exportTarget, 'an export mapping ({session} or {namespace}) or a list of them').optional(),
  export_public: z.boolean({ error: 'true or false' }).optional(),
  import: secretImport.optional(),
});

const injectionFile = z.strictObject({
  path: z.string({ error: 'an absolute path' }).regex(/^\//, { error: 'an absolute path' }),
  content: z.string({ error: 'file content (string)' }).optional(),
});

const image = z.strictObject({
  name: simpleName(),
  injection_files: z.array(injectionFile, { error: 'a list of {path, content}' }).optional(),
  volumes: z
    .array(
      z.strictObject({
        name: simpleName(),
        path: z.string({ error: 'an absolute path' }).regex(/^\//, { error: 'an absolute path' }),
      }),
      { error: 'a list of {name, path}' },
    )
    .optional(),
});

const policyList = z.array(z.string({ error: 'CREATOR, ANY, NONE, a key hash or a PEM certificate' }), {
  error: 'a list of CREATOR, ANY, NONE, key hashes or PEM certificates',
});

export const sessionSchema = z.strictObject({
  name: sessionName(),
  version: z.union([z.string(), z.number()], { error: 'a version string such as "0.3"' }),
  predecessor: hex32('predecessor session hash').nullable().optional(),
  services: z.array(service, { error: 'a list of services' }).optional(),
  secrets: z.array(secret, { error: 'a list of secrets' }).optional(),
  images: z.array(image, { error: 'a list of images' }).optional(),
  volumes: z.array(z.strictObject({ name: simpleName() }), { error: 'a list of {name}' }).optional(),
  access_policy: z
    .strictObject({
      read: policyList.optional(),
      update: policyList.optional(),
      create_sessions: policyList.optional(),
    })
    .optional(),
  security: z
    .strictObject({
      attestation: z
        .strictObject({
          mode: z.enum(['none', 'hardware'], { error: 'none or hardware' }).optional(),
          tolerate: z.array(z.enum(TOLERANCES, { error: `one of ${TOLERANCES.join(', ')}` }), {
            error: 'a list of tolerances',
          }).optional(),
          ignore_advisories: z
            .union([z.literal('*'), z.array(z.string().regex(/^[A-Za-z0-9_.-]+$/, { error: 'an advisory id' }))], {
              error: 'a list of advisory ids (such as INTEL-SA-00615) or "*"',
            })
            .optional(),
        })
        .optional(),
    })
    .optional(),
});

export type RawSession = z.infer<typeof sessionSchema>;
export type RawSecret = z.infer<typeof secret>;
export type RawService = z.infer<typeof service>;
export type RawVariant = z.infer<typeof attestationVariantSchema>;
export type RawExportTarget = z.infer<typeof exportTarget>;
