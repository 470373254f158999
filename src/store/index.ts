/**
 * The encrypted store: `cas.db` (SQLite, every value AES-256-GCM encrypted), `cas.key-store` (the database
 * key wrapped for each platform) and platform keys. Byte formats: docs/storage-format.md.
 */
export type { EvidenceType, KeyStoreEntry, Platform, PlatformMode, PlatformRegistration, SessionRecord } from './types.js';
export { EVIDENCE_TYPES } from './types.js';
export { CasDatabase, type OpenDatabaseOptions, type RotationStep } from './database.js';
export { KeyStore } from './key-store.js';
export { writeFileAtomic, fsyncDirectory } from './atomic-file.js';
export { WriteGate } from './write-gate.js';
export {
  openPlatform,
  loadOrCreateSimulationPlatform,
  simulationPlatform,
  verifyPlatformSignature,
  platformIdFromPublicKeyPem,
  PLATFORM_SIGNATURE_CONTEXT,
  type OpenPlatformOptions,
} from './platform.js';
export { wrapKeyForPlatform, platformIdFromSpki } from './key-wrap.js';
export { encryptValue, decryptValue } from './value-cipher.js';
