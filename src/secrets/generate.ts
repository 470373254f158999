import { createHash, randomBytes, randomInt, X509Certificate } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import { keyTypeOf } from '../policy/key-type.js';
import { canonicalJson, sessionHash } from '../policy/session-hash.js';
import type { KeyType, SecretDeclaration, Session } from '../policy/types.js';
import { issueCertificate, type CertificateSigner } from './certificates.js';
import { generateKeyPair, normaliseKeyPair } from './keys.js';
import type { ImportContext, SecretImporter, StoredCertificate, StoredPrivateKey, StoredSecret, StoredSecrets } from './types.js';

/** Length of a generated ascii or binary secret without `size`. */
export const DEFAULT_SECRET_SIZE = 32;
/** Validity of a generated leaf certificate without `valid_for`: 365 days. */
export const DEFAULT_LEAF_VALIDITY_SECONDS = 365 * 86400;
/** Validity of a generated CA certificate without `valid_for`: 3650 days. */
export const DEFAULT_CA_VALIDITY_SECONDS = 3650 * 86400;
/** Generated certificates start this long before `now`, so that clients with a slow clock accept them. */
export const BACKDATE_SECONDS = 300;
/** Characters of generated ascii secrets: letters and digits, safe in shells, URLs and connection strings. */
const ASCII_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export interface GenerateOptions {
  /** The clock for certificate validity; the current time when absent. */
  now?: Date;
}

/**
 * Produces the secret values of a session that is being created (`previous` undefined) or updated.
 *
 * - Explicit values are used as given (private keys re-encoded as PKCS#8).
 * - ascii and binary secrets are generated once and kept while their declaration is unchanged.
 * - Generated private keys are regenerated on every update unless `migrate: true`, as in SCONE; a
 *   certificate without `private_key` gets its own key under the same rule.
 * - Generated certificates are re-issued when their declaration, key or issuer certificate changes, or
 *   when they expired; otherwise they are kept.
 * - Imports go through `importer`, which enforces the exporter's export list; their values are copied
 *   into `imports`.
 */
export async function generateSecrets(
  session: Session,
  previous: StoredSecrets | undefined,
  importer: SecretImporter,
  options: GenerateOptions = {},
): Promise<StoredSecrets> {
  const now = options.now ?? new Date();
  const imports = await resolveImports(session, importer);
  const byName = new Map(session.secrets.map((s) => [s.name, s]));
  const result: Record<string, StoredSecret> = {};

  const ensure = async (name: string): Promise<StoredSecret> => {
    const imported = ownValue(imports, name);
    if (imported !== undefined) return imported;
    const existing = ownValue(result, name);
    if (existing !== undefined) return existing;
    const declaration = byName.get(name);
    if (declaration === undefined) throw referenceError(`secret "${name}" is not declared in session "${session.name}"`, name);
    const value = await produce(declaration, previous === undefined ? undefined : ownValue(previous.secrets, name), ensure, now);
    result[name] = value;
    return value;
  };

  for (const declaration of session.secrets) {
    if (declaration.import === undefined) await ensure(declaration.name);
  }
  return { format: 1, secrets: result, imports };
}

/**
 * Fetches every imported secret of `session` through `importer`, keyed by the local name. A declared
 * `kind` on an import must match the exporter's.
 */
export async function resolveImports(session: Session, importer: SecretImporter): Promise<Record<string, StoredSecret>> {
  const imports: Record<string, StoredSecret> = {};
  let hash: string | undefined;
  for (const declaration of session.secrets) {
    if (declaration.import === undefined) continue;
    // Hashed only when the session imports something: release calls this for every configuration request.
    hash ??= sessionHash(session);
    const context: ImportContext = { importingSessionHash: hash, importingSecret: declaration.name };
    if (declaration.import.sessionHash !== undefined) context.exporterSessionHash = declaration.import.sessionHash;
    const value = await importer(declaration.import.session, declaration.import.secret, session.name, context);
    if (declaration.kind !== undefined && declaration.kind !== value.kind) {
      throw referenceError(
        `secret "${declaration.name}" is declared as ${declaration.kind}, but "${declaration.import.secret}" of session "${declaration.import.session}" is ${value.kind}`,
        declaration.name,
      );
    }
    imports[declaration.name] = value;
  }
  return imports;
}

type Ensure = (name: string) => Promise<StoredSecret>;

async function produce(declaration: SecretDeclaration, previous: StoredSecret | undefined, ensure: Ensure, now: Date): Promise<StoredSecret> {
  const fingerprint = fingerprintOf(declaration);
  const reusable = previous !== undefined && previous.fingerprint === fingerprint && previous.origin === 'generated' ? previous : undefined;

  switch (declaration.kind) {
    case 'ascii':
      if (declaration.value !== undefined) return { kind: 'ascii', value: declaration.value, fingerprint, origin: 'explicit' };
      if (reusable?.kind === 'ascii') return reusable;
      return { kind: 'ascii', value: randomAscii(declaration.size ?? DEFAULT_SECRET_SIZE), fingerprint, origin: 'generated' };

    case 'binary':
      if (declaration.value !== undefined) {
        return { kind: 'binary', valueBase64: Buffer.from(declaration.value, 'hex').toString('base64'), fingerprint, origin: 'explicit' };
      }
      if (reusable?.kind === 'binary') return reusable;
      return { kind: 'binary', valueBase64: randomBytes(declaration.size ?? DEFAULT_SECRET_SIZE).toString('base64'), fingerprint, origin: 'generated' };

    case 'private-key':
      return producePrivateKey(declaration, reusable, fingerprint);

    case 'x509':
    case 'x509-ca':
      return produceCertificate(declaration, previous?.kind === declaration.kind ? (previous as StoredCertificate) : undefined, fingerprint, ensure, now);

    default:
      throw referenceError(`secret "${declaration.name}" has no kind`, declaration.name);
  }
}

async function producePrivateKey(declaration: SecretDeclaration, reusable: StoredSecret | undefined, fingerprint: string): Promise<StoredPrivateKey> {
  if (declaration.value !== undefined) {
    const pair = normaliseKeyPair(declaration.value);
    const type = keyTypeOf(pair.key);
    if ('unsupported' in type) throw referenceError(`secret "${declaration.name}" contains an unsupported key: ${type.unsupported}; use P-256, P-384, Ed25519, RSA-2048 or RSA-3072`, declaration.name);
    return { kind: 'private-key', keyType: type.keyType, privateKeyPem: pair.privateKeyPem, publicKeyPem: pair.publicKeyPem, fingerprint, origin: 'explicit' };
  }
  if (declaration.migrate && reusable?.kind === 'private-key') return reusable;
  const keyType = declaration.keyType ?? 'P-256';
  return { kind: 'private-key', keyType, ...(await generateKeyPair(keyType)), fingerprint, origin: 'generated' };
}

async function produceCertificate(
  declaration: SecretDeclaration,
  previous: StoredCertificate | undefined,
  fingerprint: string,
  ensure: Ensure,
  now: Date,
): Promise<StoredCertificate> {
  const kind = declaration.kind as 'x509' | 'x509-ca';
  const issuer = declaration.issuer === undefined ? undefined : await ensure(declaration.issuer);
  if (issuer !== undefined && issuer.kind !== 'x509-ca') {
    throw referenceError(`issuer "${declaration.issuer}" of "${declaration.name}" is ${issuer.kind}, not x509-ca`, declaration.name);
  }
  const issuerChain = issuer === undefined ? [] : [issuer.certificatePem, ...issuer.chainPem];

  const key = await certificateKey(declaration, previous, fingerprint, ensure);

  if (declaration.value !== undefined) return explicitCertificate(declaration, kind, key, issuerChain, fingerprint);
  if (key === undefined) throw referenceError(`certificate "${declaration.name}" has no key`, declaration.name);

  const unchanged =
    previous !== undefined &&
    previous.origin === 'generated' &&
    previous.fingerprint === fingerprint &&
    previous.publicKeyPem === key.publicKeyPem &&
    previous.chainPem[0] === issuerChain[0] &&
    new Date(previous.notAfter).getTime() > now.getTime();
  if (unchanged) return { ...previous, privateKeyPem: key.privateKeyPem, chainPem: issuerChain };

  let signer: CertificateSigner;
  let notAfter = new Date(now.getTime() + (declaration.validForSeconds ?? (kind === 'x509-ca' ? DEFAULT_CA_VALIDITY_SECONDS : DEFAULT_LEAF_VALIDITY_SECONDS)) * 1000);
  if (issuer === undefined) {
    signer = { privateKeyPem: key.privateKeyPem, keyType: key.keyType };
  } else {
    if (issuer.privateKeyPem === undefined || issuer.keyType === undefined) {
      throw referenceError(`issuer "${declaration.issuer}" of "${declaration.name}" has no private key to sign with`, declaration.name);
    }
    signer = { privateKeyPem: issuer.privateKeyPem, keyType: issuer.keyType, certificatePem: issuer.certificatePem };
    const issuerNotAfter = new Date(issuer.notAfter);
    if (issuerNotAfter < notAfter) notAfter = issuerNotAfter;
  }

  const certificatePem = await issueCertificate({
    commonName: declaration.commonName ?? declaration.name,
    publicKeyPem: key.publicKeyPem,
    keyType: key.keyType,
    ca: kind === 'x509-ca',
    dns: declaration.dns,
    ip: declaration.ip,
    ...(declaration.endpoint === undefined ? {} : { endpoint: declaration.endpoint }),
    notBefore: new Date(now.getTime() - BACKDATE_SECONDS * 1000),
    notAfter,
    signer,
  });
  return {
    kind,
    certificatePem,
    chainPem: issuerChain,
    publicKeyPem: key.publicKeyPem,
    privateKeyPem: key.privateKeyPem,
    keyType: key.keyType,
    notAfter: notAfter.toISOString(),
    fingerprint,
    origin: 'generated',
  };
}

interface CertificateKey {
  privateKeyPem: string;
  publicKeyPem: string;
  keyType: KeyType;
}

/** Selects the certificate's key: the named private-key secret, or its own key (kept under `migrate`). */
async function certificateKey(
  declaration: SecretDeclaration,
  previous: StoredCertificate | undefined,
  fingerprint: string,
  ensure: Ensure,
): Promise<CertificateKey | undefined> {
  if (declaration.privateKey !== undefined) {
    const key = await ensure(declaration.privateKey);
    if (key.kind !== 'private-key' || key.privateKeyPem === undefined) {
      throw referenceError(`private_key "${declaration.privateKey}" of "${declaration.name}" is not a private key available to this session`, declaration.name);
    }
    return { privateKeyPem: key.privateKeyPem, publicKeyPem: key.publicKeyPem, keyType: key.keyType };
  }
  if (declaration.value !== undefined) return undefined;

  const keep =
    declaration.migrate &&
    previous !== undefined &&
    previous.origin === 'generated' &&
    previous.fingerprint === fingerprint &&
    previous.privateKeyPem !== undefined &&
    previous.keyType !== undefined;
  if (keep) return { privateKeyPem: previous.privateKeyPem as string, publicKeyPem: previous.publicKeyPem, keyType: previous.keyType as KeyType };
  const keyType = declaration.keyType ?? 'P-256';
  return { keyType, ...(await generateKeyPair(keyType)) };
}

function explicitCertificate(
  declaration: SecretDeclaration,
  kind: 'x509' | 'x509-ca',
  key: CertificateKey | undefined,
  issuerChain: string[],
  fingerprint: string,
): StoredCertificate {
  const blocks = (declaration.value as string).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  const certificate = new X509Certificate(blocks[0] as string);
  const publicKey = certificate.publicKey;
  const type = keyTypeOf(publicKey);
  const stored: StoredCertificate = {
    kind,
    certificatePem: certificate.toString(),
    chainPem: blocks.length > 1 ? blocks.slice(1).map((b) => new X509Certificate(b).toString()) : issuerChain,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    notAfter: new Date(certificate.validTo).toISOString(),
    fingerprint,
    origin: 'explicit',
  };
  if ('keyType' in type) stored.keyType = type.keyType;
  if (key !== undefined) stored.privateKeyPem = key.privateKeyPem;
  return stored;
}

/** SHA-256 over the declaration fields that shape a secret's value. */
function fingerprintOf(declaration: SecretDeclaration): string {
  const shaping = {
    kind: declaration.kind,
    size: declaration.size,
    value: declaration.value,
    keyType: declaration.keyType,
    privateKey: declaration.privateKey,
    issuer: declaration.issuer,
    commonName: declaration.commonName,
    dns: declaration.dns,
    ip: declaration.ip,
    validFor: declaration.validFor,
    endpoint: declaration.endpoint,
  };
  return createHash('sha256').update(canonicalJson(shaping)).digest('hex');
}

/** Returns `record[key]` only for an own property, so names such as "constructor" never reach Object.prototype. */
export function ownValue<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function randomAscii(length: number): string {
  let out = '';
  for (let i = 0; i < length; i += 1) out += ASCII_ALPHABET[randomInt(ASCII_ALPHABET.length)];
  return out;
}

function referenceError(message: string, secret: string): CasError {
  return new CasError('SECRET_REFERENCE_INVALID', message, { details: { secret } });
}
