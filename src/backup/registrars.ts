import { CasError } from '../errors/cas-error.js';
import type { CasDatabase } from '../store/index.js';

/**
 * Meta value (encrypted in cas.db) that lists the registrar keys: client keys that the CAS owner allowed to
 * register backup platforms (`POST /v1/backup/platforms`), and nothing else. The Kubernetes registration
 * pods use such a key, so the owner's key never enters the cluster. A registrar can obtain the wrapped
 * database key for any platform key it holds, so authorising one is as sensitive as registering a platform.
 */
export const REGISTRARS_META = 'backup.registrars';

export interface Registrar {
  /** Lower-case hex SHA-256 of the registrar's SubjectPublicKeyInfo DER. */
  keyHash: string;
  authorizedAt: string;
  /** Key hash of the CAS owner who authorised it. */
  authorizedBy: string;
}

export function readRegistrars(db: CasDatabase): Registrar[] {
  const stored = db.getMeta(REGISTRARS_META);
  if (stored === undefined) return [];
  const parsed = JSON.parse(stored.toString('utf8')) as unknown;
  if (!Array.isArray(parsed)) throw new CasError('DATABASE_ERROR', `The meta value ${REGISTRARS_META} in ${db.paths.database} is not a list`);
  return parsed as Registrar[];
}

/** Stores the list; the caller runs inside the write gate and a transaction. */
export function writeRegistrars(db: CasDatabase, list: Registrar[]): void {
  db.putMeta(REGISTRARS_META, Buffer.from(JSON.stringify(list), 'utf8'));
}
