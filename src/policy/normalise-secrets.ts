import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { keyTypeOf } from './key-type.js';
import type { Problems } from './problems.js';
import type { RawExportTarget, RawSecret } from './schema.js';
import type { ExportTarget, SecretDeclaration, SecretKind } from './types.js';

type Path = (string | number)[];

/** Keys each kind of secret accepts besides `name` and `kind`. */
const KEYS_BY_KIND: Record<SecretKind | 'import', readonly (keyof RawSecret)[]> = {
  ascii: ['size', 'value', 'export'],
  binary: ['size', 'value', 'export'],
  'private-key': ['key_type', 'value', 'migrate', 'export', 'export_public'],
  x509: [
    'value', 'migrate', 'key_type', 'private_key', 'issuer', 'common_name', 'dns', 'ip', 'valid_for', 'endpoint',
    'export', 'export_public',
  ],
  'x509-ca': [
    'value', 'migrate', 'key_type', 'private_key', 'issuer', 'common_name', 'valid_for', 'export', 'export_public',
  ],
  import: ['import', 'export'],
};

/** Keys that describe how a certificate is generated; they contradict an explicit certificate `value`. */
const GENERATION_KEYS: readonly (keyof RawSecret)[] = ['key_type', 'migrate', 'common_name', 'dns', 'ip', 'valid_for', 'endpoint'];

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const HEX_BYTES = /^([0-9a-fA-F]{2})*$/;
const DURATION_UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Certificates and keys of explicit values, parsed once for the cross-checks below. */
interface ExplicitMaterial {
  certificates: Map<string, X509Certificate>;
  keys: Map<string, KeyObject>;
}

export function normaliseSecrets(raw: RawSecret[], problems: Problems): SecretDeclaration[] {
  const names = new Set<string>();
  const material: ExplicitMaterial = { certificates: new Map(), keys: new Map() };

  const secrets = raw.map((secret, index) => {
    const path: Path = ['secrets', index];
    if (names.has(secret.name)) problems.add([...path, 'name'], `duplicate secret name "${secret.name}"`);
    names.add(secret.name);
    return normaliseSecret(secret, path, problems, material);
  });

  const byName = new Map(secrets.map((s) => [s.name, s]));
  secrets.forEach((secret, index) => checkSecretReferences(secret, ['secrets', index], byName, material, problems));
  return secrets;
}

function normaliseSecret(raw: RawSecret, path: Path, problems: Problems, material: ExplicitMaterial): SecretDeclaration {
  const declaration: SecretDeclaration = {
    name: raw.name,
    migrate: raw.migrate ?? false,
    dns: raw.dns ?? [],
    ip: raw.ip ?? [],
    export: normaliseExports(raw.export, [...path, 'export'], problems),
    exportPublic: raw.export_public ?? false,
  };
  if (raw.kind !== undefined) declaration.kind = raw.kind;

  const group = raw.import !== undefined ? 'import' : raw.kind;
  if (group === undefined) {
    problems.add([...path, 'kind'], `secret "${raw.name}" has no kind; give kind (ascii, binary, private-key, x509, x509-ca) or import`);
    return declaration;
  }
  const allowed = KEYS_BY_KIND[group];
  for (const key of Object.keys(raw) as (keyof RawSecret)[]) {
    if (key === 'name' || key === 'kind' || raw[key] === undefined || allowed.includes(key)) continue;
    const what = group === 'import' ? 'an imported secret' : `a ${group} secret`;
    problems.add([...path, key], `"${key}" does not apply to ${what}`);
  }

  if (raw.import !== undefined) {
    declaration.import = { session: raw.import.session, secret: raw.import.secret };
    if (raw.import.session_hash !== undefined) declaration.import.sessionHash = raw.import.session_hash.toLowerCase();
    return declaration;
  }

  if (raw.size !== undefined) declaration.size = raw.size;
  if (raw.value !== undefined) declaration.value = raw.value;
  if (raw.key_type !== undefined) declaration.keyType = raw.key_type;
  if (raw.private_key !== undefined) declaration.privateKey = raw.private_key;
  if (raw.issuer !== undefined) declaration.issuer = raw.issuer;
  if (raw.common_name !== undefined) declaration.commonName = raw.common_name;
  if (raw.endpoint !== undefined) declaration.endpoint = raw.endpoint;
  if (raw.valid_for !== undefined) {
    declaration.validFor = raw.valid_for;
    const unit = raw.valid_for.slice(-1);
    declaration.validForSeconds = Number.parseInt(raw.valid_for, 10) * (DURATION_UNIT_SECONDS[unit] ?? 0);
  }

  declaration.dns.forEach((name, i) => {
    if (!DNS_NAME.test(name) || name.length > 253) problems.add([...path, 'dns', i], `"${name}" is not a DNS name`);
  });
  declaration.ip.forEach((address, i) => {
    if (isIP(address) === 0) problems.add([...path, 'ip', i], `"${address}" is not an IPv4 or IPv6 address`);
  });

  if (raw.value !== undefined) checkExplicitValue(declaration, raw, path, problems, material);
  return declaration;
}

function normaliseExports(raw: RawExportTarget | RawExportTarget[] | undefined, path: Path, problems: Problems): ExportTarget[] {
  if (raw === undefined) return [];
  const single = !Array.isArray(raw);
  const list = Array.isArray(raw) ? raw : [raw];
  return list.flatMap((target, index) => {
    const at = single ? path : [...path, index];
    if ((target.session === undefined) === (target.namespace === undefined)) {
      problems.add(at, 'an export names exactly one of session or namespace');
      return [];
    }
    const hash = target.session_hash?.toLowerCase();
    const result: ExportTarget =
      target.session !== undefined ? { session: target.session } : { namespace: target.namespace as string };
    if (hash !== undefined) result.sessionHash = hash;
    return [result];
  });
}

function checkExplicitValue(
  declaration: SecretDeclaration,
  raw: RawSecret,
  path: Path,
  problems: Problems,
  material: ExplicitMaterial,
): void {
  const value = raw.value as string;
  const at = [...path, 'value'];

  switch (declaration.kind) {
    case 'ascii':
      if (raw.size !== undefined) problems.add([...path, 'size'], 'give either size (to generate) or value, not both');
      return;
    case 'binary':
      if (raw.size !== undefined) problems.add([...path, 'size'], 'give either size (to generate) or value, not both');
      if (!HEX_BYTES.test(value) || value.length === 0) {
        problems.add(at, 'a binary value is written as hexadecimal bytes (an even number of 0-9, a-f)', {
          expected: 'hexadecimal bytes',
        });
      }
      return;
    case 'private-key': {
      let key: KeyObject;
      try {
        key = createPrivateKey(value);
      } catch {
        problems.add(at, 'the value is not a PEM private key (PKCS#8, SEC1 or PKCS#1)', { expected: 'a PEM private key' });
        return;
      }
      const type = keyTypeOf(key);
      if ('unsupported' in type) {
        problems.add(at, `unsupported key: ${type.unsupported}; supported are P-256, P-384, Ed25519, RSA-2048 and RSA-3072`);
        return;
      }
      if (raw.key_type !== undefined && raw.key_type !== type.keyType) {
        problems.add([...path, 'key_type'], `key_type ${raw.key_type} does not match the ${type.keyType} key in value`);
      }
      declaration.keyType = type.keyType;
      material.keys.set(declaration.name, key);
      return;
    }
    case 'x509':
    case 'x509-ca': {
      for (const key of GENERATION_KEYS) {
        if (raw[key] !== undefined) problems.add([...path, key], `"${key}" does not apply to a certificate given as value`);
      }
      const blocks = value.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
      if (blocks.length === 0) {
        problems.add(at, 'the value is not a PEM certificate', { expected: 'a PEM certificate' });
        return;
      }
      let certificate: X509Certificate;
      try {
        certificate = new X509Certificate(blocks[0] as string);
        for (const extra of blocks.slice(1)) new X509Certificate(extra);
      } catch (error) {
        problems.add(at, `the PEM certificate does not parse: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
      if (declaration.kind === 'x509-ca' && !certificate.ca) {
        problems.add(at, 'an x509-ca value must be a CA certificate (basicConstraints cA is not set)');
      }
      material.certificates.set(declaration.name, certificate);
      return;
    }
    default:
      return;
  }
}

/** Checks that private_key and issuer name suitable secrets, and that explicit material fits together. */
function checkSecretReferences(
  secret: SecretDeclaration,
  path: Path,
  byName: Map<string, SecretDeclaration>,
  material: ExplicitMaterial,
  problems: Problems,
): void {
  if (secret.kind !== 'x509' && secret.kind !== 'x509-ca') return;
  if (secret.import !== undefined) return;
  const explicit = secret.value !== undefined;

  if (secret.privateKey !== undefined) {
    const key = byName.get(secret.privateKey);
    const at = [...path, 'private_key'];
    if (key === undefined) {
      problems.addReference(at, `private_key names "${secret.privateKey}", which is not a secret of this session`, { found: secret.privateKey });
    } else if (key.import === undefined && key.kind !== 'private-key') {
      problems.addReference(at, `private_key names "${secret.privateKey}", a ${key.kind} secret; it must name a private-key secret`, { found: secret.privateKey });
    } else if (explicit && key.value === undefined) {
      problems.addReference(at, `the certificate is given as value, so its private key "${secret.privateKey}" must be given as value too`, { found: secret.privateKey });
    } else if (explicit) {
      const certificate = material.certificates.get(secret.name);
      const keyObject = material.keys.get(secret.privateKey);
      if (certificate !== undefined && keyObject !== undefined && !certificate.checkPrivateKey(keyObject)) {
        problems.addReference(at, `the private key "${secret.privateKey}" does not match the certificate's public key`, { found: secret.privateKey });
      }
    }
  }

  if (secret.issuer !== undefined) {
    const issuer = byName.get(secret.issuer);
    const at = [...path, 'issuer'];
    if (issuer === undefined) {
      problems.addReference(at, `issuer names "${secret.issuer}", which is not a secret of this session`, { found: secret.issuer });
      return;
    }
    if (issuer.name === secret.name) {
      problems.addReference(at, 'a certificate cannot name itself as issuer; omit issuer for a self-signed certificate', { found: secret.issuer });
      return;
    }
    if (issuer.import === undefined && issuer.kind !== 'x509-ca') {
      problems.addReference(at, `issuer names "${secret.issuer}", a ${issuer.kind} secret; it must name an x509-ca secret`, { found: secret.issuer });
      return;
    }
    if (issuerChainHasCycle(secret, byName)) {
      problems.addReference(at, `the issuer chain starting at "${secret.name}" is cyclic`, { found: secret.issuer });
      return;
    }
    if (explicit) {
      if (issuer.import !== undefined) return;
      const certificate = material.certificates.get(secret.name);
      const issuerCertificate = material.certificates.get(issuer.name);
      if (issuer.value === undefined) {
        problems.addReference(at, `the certificate is given as value, so its issuer "${secret.issuer}" must be given as value too`, { found: secret.issuer });
      } else if (certificate !== undefined && issuerCertificate !== undefined && !issuedBy(certificate, issuerCertificate)) {
        problems.addReference(at, `the certificate is not signed by issuer "${secret.issuer}"`, { found: secret.issuer });
      }
    } else if (issuer.import === undefined && issuer.value !== undefined && issuer.privateKey === undefined) {
      problems.addReference(at, `issuer "${secret.issuer}" is a CA certificate without private_key, so it cannot sign a generated certificate`, { found: secret.issuer });
    }
  }
}

function issuedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function issuerChainHasCycle(start: SecretDeclaration, byName: Map<string, SecretDeclaration>): boolean {
  const seen = new Set<string>([start.name]);
  let current = start.issuer === undefined ? undefined : byName.get(start.issuer);
  while (current !== undefined) {
    if (seen.has(current.name)) return true;
    seen.add(current.name);
    current = current.issuer === undefined ? undefined : byName.get(current.issuer);
  }
  return false;
}
