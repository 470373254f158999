import { createPublicKey, sign, verify, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../audit/index.js';
import { CasError } from '../errors/cas-error.js';

export const MANIFEST_FORMAT = 'cas-snapshot-manifest';
export const MANIFEST_VERSION = 1;
/** Prefix of the signed bytes, so a manifest signature cannot be taken for a signature of another protocol. */
export const MANIFEST_SIGNATURE_CONTEXT = Buffer.from('CAS snapshot manifest v1\0', 'ascii');

const hexSha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex characters');
const fileEntry = z.strictObject({ size: z.int().nonnegative(), sha256: hexSha256 });

const unsignedSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  name: z.string().min(1),
  createdAt: z.iso.datetime(),
  /** Change counter of the copied database: the number of committed changes since it was created. */
  changeCounter: z.int().nonnegative(),
  /** `PRAGMA user_version` of the copied database. */
  schemaVersion: z.int().nonnegative(),
  /** Platform id of the primary that took the snapshot. */
  platformId: z.string().regex(/^[0-9a-f]{32}$/),
  /** Platform ids that the copied key store contains, sorted; informational, the key store itself decides. */
  keyStorePlatforms: z.array(z.string().regex(/^[0-9a-f]{32}$/)),
  files: z.strictObject({ 'cas.db': fileEntry, 'cas.key-store': fileEntry }),
  /** Head of the audit log when the copy was taken; absent when the CAS has no audit log. */
  audit: z.strictObject({ seq: z.int().nonnegative(), hash: hexSha256 }).optional(),
  /** The CAS identity certificate (PEM) whose key signed this manifest. */
  casCertificate: z.string().startsWith('-----BEGIN CERTIFICATE-----'),
  /** How long writers waited while the copy was taken, in milliseconds (informational). */
  readOnlyWindowMs: z.number().nonnegative(),
});

export const manifestSchema = unsignedSchema.extend({
  /** Lower-case hex ECDSA P-256 / SHA-256 signature (IEEE P1363 r || s) over the signed bytes. */
  signature: z.string().regex(/^[0-9a-f]{128}$/, 'expected 128 lower-case hex characters'),
});

export type UnsignedManifest = z.infer<typeof unsignedSchema>;
export type SnapshotManifest = z.infer<typeof manifestSchema>;

/** Returns the bytes that the CAS identity key signs: the context prefix and the canonical JSON of the unsigned manifest. */
export function manifestSignedBytes(manifest: UnsignedManifest): Buffer {
  const { signature: _signature, ...unsigned } = manifest as SnapshotManifest;
  return Buffer.concat([MANIFEST_SIGNATURE_CONTEXT, Buffer.from(canonicalJson(unsigned), 'utf8')]);
}

/** Signs a manifest with the CAS identity's private key (PEM, ECDSA P-256). */
export function signManifest(manifest: UnsignedManifest, casPrivateKeyPem: string): SnapshotManifest {
  const signature = sign('sha256', manifestSignedBytes(manifest), { key: casPrivateKeyPem, dsaEncoding: 'ieee-p1363' });
  return { ...manifest, signature: signature.toString('hex') };
}

/** Serialises a manifest as pretty-printed JSON with a final newline. */
export function serializeManifest(manifest: SnapshotManifest): Buffer {
  return Buffer.from(JSON.stringify(manifest, undefined, 2) + '\n', 'utf8');
}

/**
 * Parses manifest bytes and checks the signature against the certificate inside the manifest. That proves
 * integrity and which CAS identity signed it. The caller checks whether that identity is the expected CAS,
 * for example against the identity stored in the snapshot's own database. Throws SNAPSHOT_INVALID
 * naming `source`.
 */
export function parseAndVerifyManifest(bytes: Buffer, source: string): SnapshotManifest {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new CasError('SNAPSHOT_INVALID', `Snapshot manifest ${source} is not complete JSON`, { cause: error });
  }
  const parsed = manifestSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
    throw new CasError('SNAPSHOT_INVALID', `Snapshot manifest ${source} is invalid: ${problems}`);
  }
  const manifest = parsed.data;

  let publicKey;
  try {
    publicKey = createPublicKey(new X509Certificate(manifest.casCertificate).publicKey.export({ type: 'spki', format: 'pem' }));
  } catch (error) {
    throw new CasError('SNAPSHOT_INVALID', `Snapshot manifest ${source} has a casCertificate that is not an X.509 certificate`, { cause: error });
  }
  const valid = verify('sha256', manifestSignedBytes(manifest), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(manifest.signature, 'hex'));
  if (!valid) {
    throw new CasError('SNAPSHOT_INVALID', `Snapshot manifest ${source}: the signature does not verify with the CAS certificate in the manifest, so the manifest was altered`);
  }
  return manifest;
}
