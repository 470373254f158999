import type { AuditEventInput, AuditHead } from '../audit/entry.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { resolveImports, resolveServiceConfig } from '../secrets/index.js';
import type { ClientKey } from './client-identity.js';
import {
  attestedDetails,
  evaluateServiceEvidence,
  isHardwareVerified,
  rejectedAuditDetails,
  rejectionLogFields,
  type HardwareEvidenceVerifier,
} from './evidence/hardware.js';
import { verifyEvidence } from './evidence/verify.js';
import type { NonceRegistry } from './nonces.js';
import type { SessionService } from './sessions.js';

export interface ConfigurationRequest {
  session: string;
  service: string;
  nonce: string;
  evidence: unknown;
  /** Untrusted: arguments given on the service's host; they only fill `@@1`, `@@2`, ... */
  hostArguments: string[];
  /** Untrusted: host environment values for `\@\@NAME` keys of the service environment. */
  hostEnvironment: Record<string, string>;
}

/**
 * Releases a service's configuration after its evidence is verified. The evidence must bind the client key
 * of the TLS connection the request arrives on and a nonce that this CAS issued to that key. So the
 * configuration reaches only the attested key, and evidence cannot be replayed.
 */
export class ConfigurationService {
  constructor(
    private readonly sessions: SessionService,
    private readonly nonces: NonceRegistry,
    private readonly audit: { append(entry: AuditEventInput): Promise<AuditHead>; hmac(value: string): string },
    private readonly logger: Logger,
    /** Verifies SGX, TDX and SEV-SNP evidence; without it only simulated evidence is accepted. */
    private readonly hardware?: HardwareEvidenceVerifier,
  ) {}

  /** Verifies and releases; `log` is the request's logger, so log lines carry the request id. */
  async release(request: ConfigurationRequest, client: ClientKey, log: Logger = this.logger): Promise<unknown> {
    const actor = { kind: 'service' as const, session: request.session, service: request.service };
    try {
      const configuration = await this.verifyAndResolve(request, client);
      await this.audit.append({
        event: 'config.released',
        actor,
        target: { session: request.session, service: request.service },
        outcome: 'success',
        details: { configHmac: this.audit.hmac(JSON.stringify(configuration)) },
      });
      // The request's completion line at level info records the release with session and service.
      log.debug({ session: request.session, service: request.service }, 'configuration released');
      return configuration;
    } catch (error) {
      if (isCasError(error) && error.code !== 'AUDIT_APPEND_FAILED') await this.recordRejection(request, error, log);
      throw error;
    }
  }

  private async verifyAndResolve(request: ConfigurationRequest, client: ClientKey): Promise<unknown> {
    this.nonces.consume(request.nonce, client.keyHash);
    // The evidence is checked before the session is looked up, so a caller without valid evidence learns
    // nothing about which sessions and services exist.
    const binding = { nonce: request.nonce, publicKeyDer: client.spkiDer };
    const verified = (await this.hardware?.verify(request.evidence, binding)) ?? (await verifyEvidence(request.evidence, binding));

    const stored = this.sessions.load(request.session);
    if (stored === undefined) {
      throw new CasError('SESSION_NOT_FOUND', `session "${request.session}" does not exist`, { details: { session: request.session } });
    }
    const service = stored.session.services.find((candidate) => candidate.name === request.service);
    if (service === undefined) {
      throw new CasError('SERVICE_NOT_FOUND', `session "${request.session}" has no service "${request.service}"`, {
        details: { session: request.session, service: request.service },
      });
    }

    if (verified.simulated && stored.session.security.mode !== 'none') {
      throw new CasError(
        'SIMULATION_NOT_ALLOWED',
        `session "${request.session}" requires hardware attestation (security.attestation.mode is "${stored.session.security.mode}"), but the service presented simulated evidence, which proves nothing; set mode: none only for development sessions`,
        { details: { session: request.session, service: request.service } },
      );
    }
    if (!verified.simulated && !isHardwareVerified(verified)) {
      throw new CasError('ATTESTATION_REJECTED', `evidence of type "${verified.type}" cannot be matched against the attestation policy of session "${request.session}"`);
    }
    if (isHardwareVerified(verified)) evaluateServiceEvidence(verified, service, stored.session);

    await this.audit.append({
      event: 'service.attested',
      actor: { kind: 'service', session: request.session, service: request.service },
      target: { session: request.session, service: request.service },
      outcome: 'success',
      details: isHardwareVerified(verified) ? attestedDetails(verified) : { evidenceType: 'simulated', measurements: {}, tcbStatus: 'NotApplicable' },
    });

    // Imports are resolved again, so the service receives the exporters' current values.
    const importedSecrets = await resolveImports(stored.session, this.sessions.importer());
    const configuration = resolveServiceConfig({
      session: stored.session,
      serviceName: request.service,
      secrets: stored.secrets,
      importedSecrets,
      hostArgs: request.hostArguments,
      hostEnv: request.hostEnvironment,
    });
    return { session: request.session, service: request.service, ...configuration };
  }

  /** Audits a rejected request; a failure to do so is logged and does not hide the rejection itself. */
  private async recordRejection(request: ConfigurationRequest, error: CasError, log: Logger): Promise<void> {
    log.warn({ session: request.session, service: request.service, code: error.code, reason: error.message, ...rejectionLogFields(error) }, 'configuration request rejected');
    try {
      await this.audit.append({
        event: 'service.rejected',
        actor: { kind: 'service', session: request.session, service: request.service },
        target: { session: request.session, service: request.service },
        outcome: 'denied',
        details: { reason: error.code, ...rejectedAuditDetails(error) },
      });
    } catch (auditError) {
      log.error({ err: auditError, session: request.session, service: request.service }, 'could not audit a rejected configuration request');
    }
  }
}
