import type { KeyType } from '../policy/types.js';

/**
 * The value of one secret as the CAS stores it (encrypted at rest by the store). PEM text is PKCS#8 for
 * private keys and SubjectPublicKeyInfo for public keys. `fingerprint` is the SHA-256 of the declaration
 * fields that shaped the value, so an update can tell whether the declaration changed.
 */
export type StoredSecret = StoredAscii | StoredBinary | StoredPrivateKey | StoredCertificate;

interface StoredBase {
  fingerprint: string;
  /** `explicit` when the session gave the value, `generated` when the CAS made it. */
  origin: 'explicit' | 'generated';
}

export interface StoredAscii extends StoredBase {
  kind: 'ascii';
  value: string;
}

export interface StoredBinary extends StoredBase {
  kind: 'binary';
  /** The bytes in base64. */
  valueBase64: string;
}

export interface StoredPrivateKey extends StoredBase {
  kind: 'private-key';
  keyType: KeyType;
  /** Absent only in a public export (`export_public`), which carries the public key alone. */
  privateKeyPem?: string;
  publicKeyPem: string;
}

export interface StoredCertificate extends StoredBase {
  kind: 'x509' | 'x509-ca';
  certificatePem: string;
  /** Issuer certificates from the direct issuer upwards, as PEM; empty for a self-signed certificate. */
  chainPem: string[];
  publicKeyPem: string;
  /** The certificate's private key; absent for a certificate given without key, or in a public export. */
  privateKeyPem?: string;
  keyType?: KeyType;
  /** ISO 8601 expiry, used to re-issue an expired certificate on update. */
  notAfter: string;
}

/** Every secret value of one session. JSON-serialisable; the store encrypts it. */
export interface StoredSecrets {
  format: 1;
  /** Secrets declared in the session, by name. */
  secrets: Record<string, StoredSecret>;
  /**
   * Imported secrets by their local name, as the exporters held them when the session was created or
   * updated. `resolveServiceConfig` prefers fresh values given as `importedSecrets`.
   */
  imports: Record<string, StoredSecret>;
}

/** The name the server code uses for the secrets of a session. */
export type GeneratedSecrets = StoredSecrets;

/** Import facts besides the names, so that the importer can enforce `session_hash` pins. */
export interface ImportContext {
  /** Hash of the importing session as it is being created or updated. */
  importingSessionHash: string;
  /** The `session_hash` the importing declaration pins the exporter to, if any. */
  exporterSessionHash?: string;
  /** The secret's local name in the importing session; lets the resolver report a cycle in full. */
  importingSecret?: string;
}

/**
 * Fetches secret `secret` of session `session` for `importingSession`, or throws CasError
 * SECRET_REFERENCE_INVALID. `createImportResolver` builds one that enforces the exporter's `export` list.
 */
export type SecretImporter = (
  session: string,
  secret: string,
  importingSession: string,
  context?: ImportContext,
) => StoredSecret | Promise<StoredSecret>;
