import type { AttestationSecurity, AttestationVariant } from '../attestation/requirements.js';

/**
 * A validated and normalised session: the output of `parseSession`. Every optional spelling of the
 * SCONE 0.3 language has been reduced to one shape, hex is lower-case, and every list is present (possibly
 * empty). The object contains only JSON values, so it can be stored and hashed as JSON.
 */
export interface Session {
  /** Session name; `/` separates namespaces (`shop/web` lives in namespace `shop`). */
  name: string;
  /** The version as written: `0.3` or `0.3.PATCH`. */
  version: string;
  /** Hash of the session this one replaces; required by the store for updates. */
  predecessor?: string;
  services: Service[];
  secrets: SecretDeclaration[];
  images: Image[];
  volumes: Volume[];
  accessPolicy: AccessPolicy;
  security: AttestationSecurity;
}

export interface Service {
  name: string;
  /** The command split into argv like a POSIX shell splits words, without any expansion. */
  command: string[];
  /** The command as written in the session. */
  commandText: string;
  /** Environment as written; keys of the form `\@\@NAME` are filled from the host at run time. */
  environment: Record<string, string>;
  pwd?: string;
  imageName?: string;
  /** Accepted evidence: a service attests when its evidence satisfies at least one variant. */
  attestation: AttestationVariant[];
}

export const SECRET_KINDS = ['ascii', 'binary', 'private-key', 'x509', 'x509-ca'] as const;
export type SecretKind = (typeof SECRET_KINDS)[number];

export const KEY_TYPES = ['P-256', 'P-384', 'Ed25519', 'RSA-2048', 'RSA-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** Export target of a secret: one session by name, or every session below a namespace. */
export type ExportTarget =
  | { session: string; sessionHash?: string }
  | { namespace: string; sessionHash?: string };

export interface SecretImport {
  /** The exporting session. */
  session: string;
  /** The secret's name in the exporting session. */
  secret: string;
  /** When set, the exporting session's current hash must equal this value. */
  sessionHash?: string;
}

export interface SecretDeclaration {
  name: string;
  /** Absent only for imported secrets, whose kind comes from the exporter. */
  kind?: SecretKind;
  /** Length in bytes (`ascii`: characters) of a generated `ascii` or `binary` secret. */
  size?: number;
  /** Explicit value given by the owner (PEM for keys and certificates). */
  value?: string;
  /** Keep a generated private key across session updates. */
  migrate: boolean;
  /** Key type of a `private-key`, or of the key generated for a certificate without `private_key`. */
  keyType?: KeyType;
  /** Name of the `private-key` secret a certificate is issued for. */
  privateKey?: string;
  /** Name of the `x509-ca` secret that signs this certificate; absent means self-signed. */
  issuer?: string;
  commonName?: string;
  dns: string[];
  ip: string[];
  /** Validity as written (`90d`). */
  validFor?: string;
  /** Validity in seconds, parsed from `validFor`. */
  validForSeconds?: number;
  endpoint?: 'server' | 'client';
  export: ExportTarget[];
  /** Export the public part (certificate or public key) to every session. */
  exportPublic: boolean;
  import?: SecretImport;
}

export interface InjectionFile {
  path: string;
  content: string;
}

export interface ImageVolume {
  name: string;
  path: string;
}

export interface Image {
  name: string;
  injectionFiles: InjectionFile[];
  volumes: ImageVolume[];
}

export interface Volume {
  name: string;
}

/**
 * One entry of an access policy list. Certificates are reduced to the SHA-256 of their public key
 * (SubjectPublicKeyInfo DER), so a renewed certificate for the same key keeps its access.
 */
export type PolicyEntry = { kind: 'creator' } | { kind: 'any' } | { kind: 'none' } | { kind: 'key'; keyHash: string };

export interface AccessPolicy {
  read: PolicyEntry[];
  update: PolicyEntry[];
  createSessions: PolicyEntry[];
}

export type PolicyAction = 'read' | 'update' | 'create_sessions';

/** A client identity: the SHA-256 (hex) of its certificate's SubjectPublicKeyInfo DER. */
export interface Principal {
  keyHash: string;
}
