import { isMap, isSeq, parseDocument, stringify } from 'yaml';
import type { AttestationVariant } from '../attestation/requirements.js';
import { REDACTED_VALUE } from './parse-session.js';
import type { PolicyEntry, SecretDeclaration, Session } from './types.js';

/**
 * Renders what `cas session read` returns: the session as YAML with every secret `value` replaced by
 * REDACTED_VALUE. Generated secrets are never part of a session, and explicit values are redacted too,
 * because readers allowed by `access_policy.read` need not be the owners who wrote them. Parsing the
 * output again fails on the marker, so a read-back file cannot overwrite the values by accident.
 *
 * With `text` (the file as uploaded), comments and layout are kept; without it the normalised session
 * is written in the session language.
 */
export function renderSessionForRead(session: Session, text?: string): string {
  if (text !== undefined) {
    const doc = parseDocument(text);
    const secrets = isMap(doc.contents) ? doc.contents.get('secrets', true) : undefined;
    if (isSeq(secrets)) {
      for (const secret of secrets.items) {
        if (isMap(secret) && secret.has('value')) secret.set('value', REDACTED_VALUE);
      }
    }
    return doc.toString();
  }
  return stringify(toSessionDocument(session, true));
}

/** Writes a normalised session back in the session language; `redact` replaces secret values. */
export function toSessionDocument(session: Session, redact: boolean): Record<string, unknown> {
  const doc: Record<string, unknown> = { name: session.name, version: session.version };
  if (session.predecessor !== undefined) doc['predecessor'] = session.predecessor;

  if (session.services.length > 0) {
    doc['services'] = session.services.map((service) => {
      const out: Record<string, unknown> = { name: service.name };
      if (service.imageName !== undefined) out['image_name'] = service.imageName;
      if (service.attestation.length > 0) out['attestation'] = service.attestation.map(variantDocument);
      if (service.commandText !== '') out['command'] = service.commandText;
      if (service.pwd !== undefined) out['pwd'] = service.pwd;
      if (Object.keys(service.environment).length > 0) out['environment'] = service.environment;
      return out;
    });
  }
  if (session.secrets.length > 0) doc['secrets'] = session.secrets.map((s) => secretDocument(s, redact));
  if (session.images.length > 0) {
    doc['images'] = session.images.map((image) => {
      const out: Record<string, unknown> = { name: image.name };
      if (image.injectionFiles.length > 0) out['injection_files'] = image.injectionFiles;
      if (image.volumes.length > 0) out['volumes'] = image.volumes;
      return out;
    });
  }
  if (session.volumes.length > 0) doc['volumes'] = session.volumes;

  doc['access_policy'] = {
    read: session.accessPolicy.read.map(policyEntryText),
    update: session.accessPolicy.update.map(policyEntryText),
    create_sessions: session.accessPolicy.createSessions.map(policyEntryText),
  };
  const security = session.security;
  doc['security'] = {
    attestation: { mode: security.mode, tolerate: security.tolerate, ignore_advisories: security.ignoreAdvisories },
  };
  return doc;
}

function variantDocument(variant: AttestationVariant): Record<string, unknown> {
  switch (variant.kind) {
    case 'mrenclave':
      return { mrenclave: variant.mrenclave };
    case 'signer':
      return {
        signer: dropUndefined({
          mrsigner: variant.mrsigner,
          isvprodid: variant.isvprodid,
          isvsvn: variant.isvsvn,
          isvsvn_min: variant.isvsvnMin,
          isvsvn_max: variant.isvsvnMax,
        }),
      };
    case 'tdx':
      return {
        tdx: dropUndefined({
          mrtd: variant.mrtd,
          rtmr0: variant.rtmr0,
          rtmr1: variant.rtmr1,
          rtmr2: variant.rtmr2,
          rtmr3: variant.rtmr3,
          td_attributes: variant.tdAttributes,
          xfam: variant.xfam,
        }),
      };
    case 'snp':
      return {
        snp: dropUndefined({
          measurement: variant.measurement,
          policy: variant.policy === undefined ? undefined : Number(variant.policy),
          host_data: variant.hostData,
        }),
      };
  }
}

function secretDocument(secret: SecretDeclaration, redact: boolean): Record<string, unknown> {
  let value: string | undefined;
  if (secret.value !== undefined) value = redact ? REDACTED_VALUE : secret.value;
  const out = dropUndefined({
    name: secret.name,
    kind: secret.kind,
    size: secret.size,
    value,
    migrate: secret.migrate ? true : undefined,
    key_type: secret.keyType,
    private_key: secret.privateKey,
    issuer: secret.issuer,
    common_name: secret.commonName,
    dns: secret.dns.length > 0 ? secret.dns : undefined,
    ip: secret.ip.length > 0 ? secret.ip : undefined,
    valid_for: secret.validFor,
    endpoint: secret.endpoint,
    export: secret.export.length > 0 ? secret.export.map((target) => dropUndefined({
      session: 'session' in target ? target.session : undefined,
      namespace: 'namespace' in target ? target.namespace : undefined,
      session_hash: target.sessionHash,
    })) : undefined,
    export_public: secret.exportPublic ? true : undefined,
    import: secret.import === undefined ? undefined : dropUndefined({
      session: secret.import.session,
      secret: secret.import.secret,
      session_hash: secret.import.sessionHash,
    }),
  });
  return out;
}

function policyEntryText(entry: PolicyEntry): string {
  switch (entry.kind) {
    case 'creator':
      return 'CREATOR';
    case 'any':
      return 'ANY';
    case 'none':
      return 'NONE';
    case 'key':
      return entry.keyHash;
  }
}

function dropUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
}
