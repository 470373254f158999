/**
 * Types shared by the encrypted store, the key store and the platform keys. The byte formats behind them are
 * documented in docs/storage-format.md.
 */

/** Protection of a platform's private key: sealed by a TEE (`hardware`) or kept in a file (`simulation`). */
export type PlatformMode = 'simulation' | 'hardware';

/** Kind of evidence that was verified when a platform was registered in the key store. */
export type EvidenceType = 'simulation' | 'sgx' | 'tdx' | 'snp';

export const EVIDENCE_TYPES: readonly EvidenceType[] = ['simulation', 'sgx', 'tdx', 'snp'];

/**
 * One machine's identity: a P-256 key pair used for ECDH (unwrapping the database key) and for ECDSA
 * (signing simulated evidence and registration statements).
 */
export interface Platform {
  /** Hex of the first 16 bytes of SHA-256 over the public key's SPKI DER (32 hex characters). */
  readonly id: string;
  readonly mode: PlatformMode;
  /** SPKI public key, PEM. */
  readonly publicKeyPem: string;
  /** SPKI public key, DER. */
  readonly publicKeyDer: Buffer;
  /** Unwraps the database key in an entry made for this platform; throws DECRYPTION_FAILED or KEY_STORE_INVALID. */
  unwrapDatabaseKey(entry: KeyStoreEntry): Buffer;
  /**
   * Signs `data` with ECDSA P-256 / SHA-256. The signed message is a fixed context prefix followed by `data`,
   * so a platform signature cannot be replayed as a signature of another protocol. Returns the 64-byte
   * IEEE P1363 form (r || s). Check with `verifyPlatformSignature`.
   */
  sign(data: Buffer): Buffer;
}

/** One platform that may open the database: the database key wrapped for that platform's public key. */
export interface KeyStoreEntry {
  platformId: string;
  /** SPKI public key of the platform, PEM. */
  publicKeyPem: string;
  /** Wrapped database key (ECDH-ES P-256 + HKDF-SHA-256 + AES-256-GCM), see docs/storage-format.md. */
  wrappedKey: Buffer;
  /** ISO 8601 time of registration. */
  registeredAt: string;
  evidenceType: EvidenceType;
  /** Registrant: `initial` for the platform that created the database, else the registering owner's key hash. */
  registeredBy: string;
}

/** Registration request for another platform. The store wraps the live database key for its public key. */
export interface PlatformRegistration {
  publicKeyPem: string;
  evidenceType: EvidenceType;
  registeredBy: string;
  /** Defaults to now. */
  registeredAt?: Date;
}

/** One stored session version: the uploaded YAML and the secret values generated for it. */
export interface SessionRecord {
  name: string;
  /** Hash that identifies this session version (hex). */
  hash: string;
  /** Hash of the version this one replaced; absent for the first version. */
  predecessor?: string;
  /** The session YAML exactly as uploaded. */
  text: string;
  /** Hash of the public key of the client that created the session. */
  creatorKeyHash: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601. */
  updatedAt: string;
  /** Generated secret values (any JSON value). */
  secrets: unknown;
  /** Further JSON data the server keeps with the session (for example its parsed form). */
  data?: unknown;
}
