import { createPublicKey } from 'node:crypto';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import type { CasDatabase } from '../store/index.js';
import type { CommitChange } from '../server/provisioning.js';
import type { NonceRegistry } from '../server/nonces.js';
import { readOwnerSettings } from '../server/owner-settings.js';
import { readRegistrars, writeRegistrars, type Registrar } from './registrars.js';
import { readRemovedPlatforms, writeRemovedPlatforms, type RemovedPlatform } from './removed-platforms.js';
import { sha256Hex, verifyRegistrationEvidence } from './registration-evidence.js';

/** One platform that may open the database, as `cas backup list` shows it. */
export interface BackupPlatform {
  platformId: string;
  registeredAt: string;
  evidenceType: string;
  registeredBy: string;
  /** True for the platform of the running primary. */
  primary: boolean;
}

export interface BackupServiceOptions {
  db: CasDatabase;
  commit: CommitChange;
  /** Key hash of the CAS owner, or undefined when the CAS is not provisioned. */
  ownerKeyHash: () => string | undefined;
  mode: 'simulation' | 'hardware';
  casCertificatePem: string;
  nonces: NonceRegistry;
  logger: Logger;
}

/**
 * Registration and removal of backup targets. The CAS owner may call everything; a registrar key that the
 * owner authorised may only register platforms. Every change appends
 * `backup.registered` or `backup.removed` to the audit log and changes cas.key-store and cas.db inside
 * one writer of the write gate, so a snapshot never contains one change without the other.
 */
export class BackupService {
  constructor(private readonly options: BackupServiceOptions) {}

  /**
   * Verifies the evidence (bound to a nonce that was issued to this client) and wraps the database key for
   * the platform. Idempotent: a platform that is already registered is returned with `added: false`.
   */
  async register(request: { nonce: string; evidence: unknown }, clientKeyHash: string): Promise<{ platform: BackupPlatform; added: boolean }> {
    const { db, commit, nonces, logger } = this.options;
    this.requireOwnerOrRegistrar(clientKeyHash);
    nonces.consume(request.nonce, clientKeyHash);
    const verified = verifyRegistrationEvidence(request.evidence, { nonce: request.nonce, casCertificatePem: this.options.casCertificatePem });
    if (this.options.mode === 'hardware' && verified.evidenceType === 'simulation') {
      throw new CasError('SIMULATION_NOT_ALLOWED', `platform ${verified.platformId} presented simulated evidence, which a CAS in hardware mode does not accept for backup targets`);
    }
    if (verified.evidenceType === 'simulation' && !readOwnerSettings(db).backup.acceptSimulatedEvidence) {
      throw new CasError('SIMULATION_NOT_ALLOWED', `platform ${verified.platformId} presented simulated evidence, which the CAS owner disabled for backup targets (setting backup.acceptSimulatedEvidence)`);
    }

    return db.writeGate.run(async () => {
      const existing = db.listPlatforms().find((entry) => entry.platformId === verified.platformId);
      if (existing !== undefined) return { platform: this.view(existing), added: false };

      await commit(
        { event: 'backup.registered', actor: { kind: 'client', keyHash: clientKeyHash }, target: { platformKeyHash: verified.platformKeyHash }, outcome: 'success', details: {} },
        () => {
          db.addPlatform({ publicKeyPem: verified.publicKeyPem, evidenceType: verified.evidenceType, registeredBy: clientKeyHash });
          const removed = readRemovedPlatforms(db);
          if (removed.some((entry) => entry.platformId === verified.platformId)) {
            writeRemovedPlatforms(db, removed.filter((entry) => entry.platformId !== verified.platformId));
          }
        },
      );
      const entry = db.listPlatforms().find((candidate) => candidate.platformId === verified.platformId)!;
      logger.info({ platformId: entry.platformId, evidenceType: entry.evidenceType, registeredBy: clientKeyHash }, 'backup target registered');
      return { platform: this.view(entry), added: true };
    });
  }

  list(clientKeyHash: string): { platforms: BackupPlatform[]; removed: RemovedPlatform[]; registrars: Registrar[] } {
    this.requireOwner(clientKeyHash, 'list backup targets');
    const { db } = this.options;
    return { platforms: db.listPlatforms().map((entry) => this.view(entry)), removed: readRemovedPlatforms(db), registrars: readRegistrars(db) };
  }

  /**
   * Removes a backup target's key store entry, records the removal in the database and rotates the database
   * key, so a copy of the old key store no longer opens the database or a later snapshot. Throws NOT_FOUND for
   * an unknown platform and INVALID_ARGUMENT for the primary's own platform.
   */
  async remove(platformId: string, clientKeyHash: string): Promise<RemovedPlatform> {
    const { db, commit, logger } = this.options;
    this.requireOwner(clientKeyHash, 'remove a backup target');
    if (platformId === db.platformId) {
      throw new CasError('INVALID_ARGUMENT', `platform ${platformId} is the platform of this primary; removing it would lock this CAS out of its own database`);
    }
    return db.writeGate.run(async () => {
      const entry = db.listPlatforms().find((candidate) => candidate.platformId === platformId);
      if (entry === undefined) {
        throw new CasError('NOT_FOUND', `platform ${platformId} is not registered as a backup target; cas backup list shows the registered ones`, { details: { platformId } });
      }
      const removal: RemovedPlatform = { platformId, removedAt: new Date().toISOString(), removedBy: clientKeyHash };
      const platformKeyHash = sha256Hex(createPublicKey(entry.publicKeyPem).export({ type: 'spki', format: 'der' }));
      await commit(
        { event: 'backup.removed', actor: { kind: 'client', keyHash: clientKeyHash }, target: { platformKeyHash }, outcome: 'success', details: {} },
        () => {
          writeRemovedPlatforms(db, [...readRemovedPlatforms(db).filter((item) => item.platformId !== platformId), removal]);
          db.removePlatform(platformId);
        },
      );
      // The removal committed together with the audit head; the rotation commits on its own afterwards,
      // still inside this writer. If the process stops in between, the next open of the database rotates.
      db.rotateDatabaseKey();
      logger.info({ platformId, removedBy: clientKeyHash }, 'backup target removed');
      return removal;
    });
  }

  /** Allows `keyHash` to register backup platforms. Idempotent: an authorised key keeps its record. */
  async authorizeRegistrar(keyHash: string, clientKeyHash: string): Promise<{ registrar: Registrar; added: boolean }> {
    const { db, commit, logger } = this.options;
    this.requireOwner(clientKeyHash, 'authorise a registrar');
    if (keyHash === clientKeyHash) throw new CasError('INVALID_ARGUMENT', 'the CAS owner may register platforms already; authorise a separate registrar key');
    return db.writeGate.run(async () => {
      const existing = readRegistrars(db).find((entry) => entry.keyHash === keyHash);
      if (existing !== undefined) return { registrar: existing, added: false };
      const registrar: Registrar = { keyHash, authorizedAt: new Date().toISOString(), authorizedBy: clientKeyHash };
      await commit(
        { event: 'backup.registrar.authorized', actor: { kind: 'client', keyHash: clientKeyHash }, outcome: 'success', details: { registrarKeyHash: keyHash } },
        () => writeRegistrars(db, [...readRegistrars(db), registrar]),
      );
      logger.info({ registrarKeyHash: keyHash, authorizedBy: clientKeyHash }, 'backup registrar authorised');
      return { registrar, added: true };
    });
  }

  /** Withdraws a registrar key; platforms it registered stay registered. Throws NOT_FOUND for an unknown key. */
  async revokeRegistrar(keyHash: string, clientKeyHash: string): Promise<void> {
    const { db, commit, logger } = this.options;
    this.requireOwner(clientKeyHash, 'revoke a registrar');
    await db.writeGate.run(async () => {
      const registrars = readRegistrars(db);
      if (!registrars.some((entry) => entry.keyHash === keyHash)) {
        throw new CasError('NOT_FOUND', `client key ${keyHash} is not an authorised registrar; cas backup list --output json shows the registrars`, { details: { keyHash } });
      }
      await commit(
        { event: 'backup.registrar.revoked', actor: { kind: 'client', keyHash: clientKeyHash }, outcome: 'success', details: { registrarKeyHash: keyHash } },
        () => writeRegistrars(db, registrars.filter((entry) => entry.keyHash !== keyHash)),
      );
      logger.info({ registrarKeyHash: keyHash, revokedBy: clientKeyHash }, 'backup registrar revoked');
    });
  }

  private requireOwnerOrRegistrar(clientKeyHash: string): void {
    const owner = this.options.ownerKeyHash();
    if (owner !== undefined && owner === clientKeyHash) return;
    if (owner !== undefined && readRegistrars(this.options.db).some((entry) => entry.keyHash === clientKeyHash)) return;
    this.requireOwner(clientKeyHash, 'register a backup target (or a registrar key it authorised)');
  }

  private requireOwner(clientKeyHash: string, action: string): void {
    const owner = this.options.ownerKeyHash();
    if (owner === undefined) throw new CasError('NOT_PROVISIONED', `this CAS is not provisioned yet, so nobody may ${action}; run cas provision first`);
    if (owner !== clientKeyHash) {
      throw new CasError('PERMISSION_DENIED', `only the CAS owner may ${action}; client key ${clientKeyHash} is not the owner`);
    }
  }

  private view(entry: { platformId: string; registeredAt: string; evidenceType: string; registeredBy: string }): BackupPlatform {
    return {
      platformId: entry.platformId,
      registeredAt: entry.registeredAt,
      evidenceType: entry.evidenceType,
      registeredBy: entry.registeredBy,
      primary: entry.platformId === this.options.db.platformId,
    };
  }
}
