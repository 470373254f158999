import { CasError } from '../errors/cas-error.js';
import { sendRequest, type CasResponse, type ServerTrust } from './transport.js';
import type { OwnerSettings, OwnerSettingsDocument } from '../server/owner-settings.js';

/** Response header that a CAS in simulation mode adds to every response. */
export const MODE_HEADER = 'cas-mode';

export interface SessionSummary {
  name: string;
  hash: string;
}

export interface SessionView extends SessionSummary {
  predecessor?: string;
  creatorKeyHash: string;
  /** The session as YAML, with explicit secret values replaced; generated secret values are never returned. */
  session: string;
}

export interface CasEvidenceResponse {
  mode: 'simulation' | 'hardware';
  evidence: unknown;
  certificatePem: string;
}

/** The configuration of one service, as CAS releases it after attestation. */
export interface ServiceConfiguration {
  session: string;
  service: string;
  command: string[];
  environment: Record<string, string>;
  pwd?: string;
  injectionFiles: Array<{ path: string; content: string }>;
}

/**
 * Typed calls of the CAS REST API (docs/api.md). Each call opens its own TLS connection with the given
 * client key, so the configuration call can use an ephemeral key that the evidence binds.
 */
export class CasClient {
  constructor(
    private readonly options: {
      casUrl: URL;
      clientKeyPem: string;
      clientCertificatePem: string;
      trust: ServerTrust;
      timeoutMs?: number;
    },
  ) {}

  get casUrl(): URL {
    return this.options.casUrl;
  }

  /** Returns a client for the same CAS and trust that authenticates with another key (for example an ephemeral one). */
  withClientKey(clientKeyPem: string, clientCertificatePem: string): CasClient {
    return new CasClient({ ...this.options, clientKeyPem, clientCertificatePem });
  }

  async status(): Promise<{ mode: string; provisioned: boolean; certificateSha256: string; version: string }> {
    return (await this.call('GET', '/v1/status')).body as never;
  }

  async provision(token: string): Promise<{ owner: string }> {
    return (await this.call('POST', '/v1/provision', { token })).body as never;
  }

  /** Requests the CAS's evidence for the nonce; also returns the certificate presented on that connection. */
  async casEvidence(nonce: string): Promise<CasEvidenceResponse & { presentedCertificateDer: Buffer }> {
    const response = await this.call('POST', '/v1/attestation', { nonce });
    return { ...(response.body as CasEvidenceResponse), presentedCertificateDer: response.serverCertificateDer };
  }

  async createSession(text: string): Promise<SessionSummary> {
    return (await this.call('POST', '/v1/sessions', { session: text })).body as SessionSummary;
  }

  async updateSession(name: string, text: string): Promise<SessionSummary> {
    return (await this.call('PUT', sessionPath(name), { session: text })).body as SessionSummary;
  }

  async readSession(name: string): Promise<SessionView> {
    return (await this.call('GET', sessionPath(name))).body as SessionView;
  }

  async listSessions(): Promise<SessionSummary[]> {
    return ((await this.call('GET', '/v1/sessions')).body as { sessions: SessionSummary[] }).sessions;
  }

  async deleteSession(name: string): Promise<void> {
    await this.call('DELETE', sessionPath(name));
  }

  async requestNonce(): Promise<{ nonce: string; expiresAt: string }> {
    return (await this.call('POST', '/v1/nonces', {})).body as never;
  }

  async fetchConfiguration(request: {
    session: string;
    service: string;
    nonce: string;
    evidence: unknown;
    hostArguments: string[];
    hostEnvironment: Record<string, string>;
  }): Promise<ServiceConfiguration> {
    return (await this.call('POST', '/v1/configuration', request)).body as ServiceConfiguration;
  }

  async auditHead(): Promise<{ seq: number; hash: string }> {
    return (await this.call('GET', '/v1/audit/head')).body as never;
  }

  /** Reads the effective owner settings (CAS owner only). */
  async ownerSettings(): Promise<{ settings: OwnerSettings }> {
    return (await this.call('GET', '/v1/cas/settings')).body as never;
  }

  /** Replaces the owner settings (CAS owner only); keys left out return to their defaults. */
  async replaceOwnerSettings(settings: OwnerSettingsDocument): Promise<{ settings: OwnerSettings; changed: string[] }> {
    return (await this.call('PUT', '/v1/cas/settings', { settings })).body as never;
  }

  private async call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<CasResponse> {
    const response = await sendRequest(this.options, method, path, body);
    if (typeof response.body !== 'object' || response.body === null) {
      throw new CasError('CONNECTION_FAILED', `CAS at ${this.options.casUrl.origin} returned a response that is not JSON (HTTP ${response.status})`);
    }
    return response;
  }
}

/** Session names contain `/`; the API takes the whole name as one percent-encoded path segment. */
export function sessionPath(name: string): string {
  return `/v1/sessions/${encodeURIComponent(name)}`;
}
