import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCertificate } from '../tls/certificates.js';
import type { AuditSigner } from './audit-log.js';
import type { AuditEventInput, AuditEventType } from './entry.js';
import { createAuditKeyPair, issueAuditCertificate } from './signing.js';

/**
 * Real key material for audit tests: a self-signed CAS identity certificate, an audit key, and the audit
 * key's certificate issued by the CAS key.
 */
export interface AuditTestIdentity {
  casKey: KeyObject;
  casCertificatePem: string;
  signer: AuditSigner;
  hmacKey: Buffer;
}

export async function createAuditTestIdentity(): Promise<AuditTestIdentity> {
  const cas = await createSelfSignedCertificate({ commonName: 'cas-under-test', usage: 'server', validDays: 30, ipAddresses: ['127.0.0.1'] });
  const casKey = createPrivateKey(cas.privateKeyPem);
  const audit = createAuditKeyPair();
  const auditCertificatePem = await issueAuditCertificate({ casKey, casCertPem: cas.certificatePem, auditPublicKey: audit.publicKey });
  return {
    casKey,
    casCertificatePem: cas.certificatePem,
    signer: { privateKey: audit.privateKey, certificateChainPem: [auditCertificatePem, cas.certificatePem] },
    hmacKey: randomBytes(32),
  };
}

/** Writes the identity to files so a child process can load it with `loadAuditTestIdentity`. */
export async function saveAuditTestIdentity(identity: AuditTestIdentity, directory: string): Promise<string> {
  const file = join(directory, 'audit-identity.json');
  await writeFile(
    file,
    JSON.stringify({
      auditKeyPem: identity.signer.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      chain: identity.signer.certificateChainPem,
      casCertificatePem: identity.casCertificatePem,
      hmacKeyHex: identity.hmacKey.toString('hex'),
    }),
    { mode: 0o600 },
  );
  return file;
}

export function loadAuditTestIdentity(json: string): Omit<AuditTestIdentity, 'casKey'> {
  const saved = JSON.parse(json) as { auditKeyPem: string; chain: string[]; casCertificatePem: string; hmacKeyHex: string };
  return {
    casCertificatePem: saved.casCertificatePem,
    signer: { privateKey: createPrivateKey(saved.auditKeyPem), certificateChainPem: saved.chain },
    hmacKey: Buffer.from(saved.hmacKeyHex, 'hex'),
  };
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `cas-audit-${prefix}-`));
}

/** Returns a varied sequence of events, as a running CAS would append them. */
export function sampleEvents(hmac: (value: string) => string): AuditEventInput[] {
  const owner = { kind: 'client', keyHash: 'a'.repeat(64) } as const;
  return [
    { event: 'cas.started', actor: { kind: 'cas' }, outcome: 'success', details: { mode: 'simulation', version: '0.1.0' } },
    { event: 'cas.provisioned', actor: owner, outcome: 'success', details: {} },
    { event: 'session.created', actor: owner, target: { session: 'team/app' }, outcome: 'success', details: { sessionHash: 'b'.repeat(64) } },
    {
      event: 'service.attested',
      actor: { kind: 'service', session: 'team/app', service: 'api' },
      target: { session: 'team/app', service: 'api' },
      outcome: 'success',
      details: { evidenceType: 'simulated', measurements: { mrenclave: 'c'.repeat(64), isvsvn: 3 }, tcbStatus: 'NotApplicable' },
    },
    { event: 'config.released', actor: { kind: 'service', session: 'team/app', service: 'api' }, target: { session: 'team/app', service: 'api' }, outcome: 'success', details: { configHmac: hmac('config-v1') } },
    { event: 'service.rejected', actor: { kind: 'service', session: 'team/app', service: 'db' }, target: { session: 'team/app', service: 'db' }, outcome: 'denied', details: { reason: 'ATTESTATION_REJECTED', evidenceType: 'sgx-dcap' } },
    { event: 'cas.stopped', actor: { kind: 'cas' }, outcome: 'success', details: { reason: 'shutdown' } },
  ];
}

/** Returns one valid entry for every event type, keyed by type, so a test can write and count them all. */
export function exampleOfEveryEvent(hmac: (value: string) => string): Record<AuditEventType, AuditEventInput> {
  const owner = { kind: 'client', keyHash: '1'.repeat(64) } as const;
  const service = { kind: 'service', session: 'team/app', service: 'api' } as const;
  const target = { session: 'team/app', service: 'api' };
  return {
    'cas.started': { event: 'cas.started', actor: { kind: 'cas' }, outcome: 'success', details: { mode: 'hardware', version: '1.2.3', repairedBytes: 17 } },
    'cas.stopped': { event: 'cas.stopped', actor: { kind: 'cas' }, outcome: 'success', details: { reason: 'signal' } },
    'cas.provisioned': { event: 'cas.provisioned', actor: owner, outcome: 'success', details: {} },
    'cas.settings.updated': { event: 'cas.settings.updated', actor: owner, outcome: 'success', details: { changed: ['backup.acceptSimulatedEvidence'] } },
    'session.created': { event: 'session.created', actor: owner, target: { session: 'team/app' }, outcome: 'success', details: { sessionHash: '2'.repeat(64) } },
    'session.updated': {
      event: 'session.updated',
      actor: owner,
      target: { session: 'team/app' },
      outcome: 'success',
      details: { sessionHash: '3'.repeat(64), predecessor: '2'.repeat(64) },
    },
    'session.deleted': { event: 'session.deleted', actor: owner, target: { session: 'team/app' }, outcome: 'success', details: { sessionHash: '3'.repeat(64) } },
    'session.read': { event: 'session.read', actor: owner, target: { session: 'team/app' }, outcome: 'denied', details: {} },
    'service.attested': {
      event: 'service.attested',
      actor: service,
      target,
      outcome: 'success',
      details: {
        evidenceType: 'tdx',
        measurements: { mrtd: '4'.repeat(96), rtmr0: '5'.repeat(96), tdAttributes: '0'.repeat(16), debug: false },
        tcbStatus: 'TDRelaunchAdvised',
        advisories: ['INTEL-SA-00837'],
      },
    },
    'service.rejected': {
      event: 'service.rejected',
      actor: service,
      target,
      outcome: 'denied',
      details: { reason: 'TCB_NOT_MATCHED', evidenceType: 'sgx-dcap', measurements: { mrenclave: '6'.repeat(64) }, tcbStatus: 'OutOfDate' },
    },
    'config.released': { event: 'config.released', actor: service, target, outcome: 'success', details: { configHmac: hmac('configuration') } },
    'backup.registered': { event: 'backup.registered', actor: owner, target: { platformKeyHash: '7'.repeat(64) }, outcome: 'success', details: {} },
    'backup.removed': { event: 'backup.removed', actor: owner, target: { platformKeyHash: '7'.repeat(64) }, outcome: 'success', details: {} },
    'backup.registrar.authorized': { event: 'backup.registrar.authorized', actor: owner, outcome: 'success', details: { registrarKeyHash: '9'.repeat(64) } },
    'backup.registrar.revoked': { event: 'backup.registrar.revoked', actor: owner, outcome: 'success', details: { registrarKeyHash: '9'.repeat(64) } },
    'snapshot.created': { event: 'snapshot.created', actor: { kind: 'cas' }, target: { snapshot: '2026-12-04T19-00-00Z' }, outcome: 'success', details: { databaseSha256: '8'.repeat(64) } },
    'restore': { event: 'restore', actor: { kind: 'operator' }, target: { snapshot: '2026-12-04T19-00-00Z' }, outcome: 'success', details: { databaseSha256: '8'.repeat(64) } },
    'log.rotated': {
      event: 'log.rotated',
      actor: { kind: 'cas' },
      outcome: 'success',
      details: { previousFile: 'cas_audit.log.000000000001-000000000014', previousFirstSeq: 1, previousLastSeq: 14 },
    },
  };
}
