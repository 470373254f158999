import { CasError } from '../errors/cas-error.js';
import { resolveCasUrl } from '../client/connect.js';
import { casHome, loadOrCreateIdentity, readPinnedCertificate } from '../client/home.js';
import { sendRequest, type TransportOptions } from '../client/transport.js';
import type { Platform } from '../store/types.js';
import type { BackupPlatform } from './backup-service.js';
import { createRegistrationEvidence } from './registration-evidence.js';
import type { Registrar } from './registrars.js';
import type { RemovedPlatform } from './removed-platforms.js';

/**
 * Client side of the backup-target API. Requests use the client identity in CAS_HOME (the CAS owner's)
 * and require the CAS certificate that `cas attest` pinned. The registration evidence is bound to that
 * pinned certificate, so a platform only registers with the CAS its owner attested.
 */
export class BackupClient {
  private constructor(
    private readonly transport: TransportOptions,
    private readonly casCertificatePem: string,
  ) {}

  /**
   * Connects with the client identity in `home` (default CAS_HOME); throws SERVER_NOT_PINNED when `cas attest`
   * has not run there for this URL.
   */
  static async connect(casFlag: string | undefined, home: string = casHome()): Promise<BackupClient> {
    const casUrl = resolveCasUrl(casFlag);
    const identity = await loadOrCreateIdentity(home);
    const pinned = readPinnedCertificate(casUrl, home);
    if (pinned === undefined) {
      throw new CasError(
        'SERVER_NOT_PINNED',
        `no pinned certificate for the CAS at ${casUrl.origin} in ${home}; run: cas attest --cas ${casUrl.origin} (add --accept-simulation for a simulated CAS)`,
        { details: { url: casUrl.origin } },
      );
    }
    const transport: TransportOptions = {
      casUrl,
      clientKeyPem: identity.privateKeyPem,
      clientCertificatePem: identity.certificatePem,
      trust: { kind: 'pinned', certificatePem: pinned },
    };
    return new BackupClient(transport, pinned);
  }

  /**
   * Builds a client from an explicit identity and pinned CAS certificate, for callers that keep them
   * elsewhere than in CAS_HOME (the kubectl plugin, tests).
   */
  static withIdentity(options: { casUrl: URL; clientKeyPem: string; clientCertificatePem: string; casCertificatePem: string }): BackupClient {
    const transport: TransportOptions = {
      casUrl: options.casUrl,
      clientKeyPem: options.clientKeyPem,
      clientCertificatePem: options.clientCertificatePem,
      trust: { kind: 'pinned', certificatePem: options.casCertificatePem },
    };
    return new BackupClient(transport, options.casCertificatePem);
  }

  /** Requests a nonce, signs registration evidence with the platform key and registers the platform. */
  async register(platform: Platform): Promise<{ platform: BackupPlatform; added: boolean }> {
    const { nonce } = (await sendRequest(this.transport, 'POST', '/v1/nonces', {})).body as { nonce: string };
    const evidence = createRegistrationEvidence(platform, nonce, this.casCertificatePem);
    return (await sendRequest(this.transport, 'POST', '/v1/backup/platforms', { nonce, evidence })).body as { platform: BackupPlatform; added: boolean };
  }

  async list(): Promise<{ platforms: BackupPlatform[]; removed: RemovedPlatform[]; registrars: Registrar[] }> {
    return (await sendRequest(this.transport, 'GET', '/v1/backup/platforms')).body as { platforms: BackupPlatform[]; removed: RemovedPlatform[]; registrars: Registrar[] };
  }

  /** Allows the client key with this hash to register platforms (CAS owner only). */
  async authorizeRegistrar(keyHash: string): Promise<{ registrar: Registrar; added: boolean }> {
    return (await sendRequest(this.transport, 'POST', '/v1/backup/registrars', { keyHash })).body as { registrar: Registrar; added: boolean };
  }

  async revokeRegistrar(keyHash: string): Promise<void> {
    await sendRequest(this.transport, 'DELETE', `/v1/backup/registrars/${encodeURIComponent(keyHash)}`);
  }

  async remove(platformId: string): Promise<RemovedPlatform & { removed: true }> {
    return (await sendRequest(this.transport, 'DELETE', `/v1/backup/platforms/${encodeURIComponent(platformId)}`)).body as RemovedPlatform & { removed: true };
  }
}
