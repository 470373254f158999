import type { AttestationSecurity } from '../attestation/requirements.js';
import { DEFAULT_POLICY_LIST, parsePolicyEntry } from './access.js';
import { normaliseSecrets } from './normalise-secrets.js';
import { normaliseServices } from './normalise-services.js';
import { checkFormatForKind, findPlaceholders, resolvePlaceholder } from './placeholders.js';
import { Problems } from './problems.js';
import { sessionSchema, TEMPLATE_VARIABLE, type RawSession } from './schema.js';
import { formatPath, loadYaml, sessionInvalid, type KeyPath } from './source.js';
import type { AccessPolicy, Image, PolicyEntry, SecretDeclaration, Session, Volume } from './types.js';
import { problemsFromIssues } from './zod-issues.js';

/** Versions of the session language this parser accepts: 0.3 and its patch versions 0.3.x. */
export const SUPPORTED_VERSIONS = /^0\.3(\.[0-9]+)?$/;

/**
 * At most this many secrets per session. Every secret is produced inside the database's write gate when the
 * session is created or updated, so an unbounded list would let one request hold all writers for minutes.
 */
export const MAX_SECRETS = 256;
/** At most this many bytes of generated ascii and binary secrets (the sum of their `size`) per session. */
export const MAX_GENERATED_SECRET_BYTES = 1024 * 1024;

/** The text `renderSessionForRead` writes in place of secret values; a session containing it is rejected. */
export const REDACTED_VALUE = '<redacted by cas session read>';

/**
 * Parses and validates a session file (SCONE session language 0.3 with TDX and SEV-SNP extensions) and
 * returns it normalised. Throws CasError SESSION_INVALID naming the problem (line and column for YAML
 * syntax, otherwise key path, expected and found value), or SECRET_REFERENCE_INVALID for a placeholder,
 * private_key or issuer that names no suitable secret.
 */
export function parseSession(text: string): Session {
  const source = loadYaml(text);
  const data = source.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw sessionInvalid([
      { path: '(document)', message: 'a session is a YAML mapping with at least name and version', expected: 'a mapping' },
    ]);
  }

  const parsed = sessionSchema.safeParse(data);
  if (!parsed.success) throw sessionInvalid(problemsFromIssues(parsed.error.issues, source));
  const raw = parsed.data;
  const problems = new Problems(source);

  const version = checkVersion(raw, problems);
  const security = normaliseSecurity(raw);
  const services = normaliseServices(raw.services ?? [], security.mode === 'hardware', problems);
  const secrets = normaliseSecrets(raw.secrets ?? [], problems);
  const volumes = normaliseVolumes(raw, problems);
  const images = normaliseImages(raw, volumes, problems);
  const accessPolicy = normaliseAccessPolicy(raw, problems);

  services.forEach((service, index) => {
    if (service.imageName !== undefined && !images.some((image) => image.name === service.imageName)) {
      problems.add(['services', index, 'image_name'], `no image named "${service.imageName}" is declared under images`, {
        found: service.imageName,
      });
    }
  });
  checkSecretLimits(secrets, problems);
  for (const [index, secret] of secrets.entries()) {
    if (secret.value === REDACTED_VALUE) {
      problems.add(['secrets', index, 'value'], 'the value is the redaction marker of cas session read; write the real value or remove the key');
    }
  }

  const session: Session = { name: raw.name, version, services, secrets, images, volumes, accessPolicy, security };
  if (raw.predecessor !== undefined && raw.predecessor !== null) session.predecessor = raw.predecessor.toLowerCase();

  problems.throwIfAny();
  checkPlaceholders(session, problems);
  problems.throwIfAny();
  return session;
}

/** Bounds the work and memory that generating a session's secrets takes (MAX_SECRETS, MAX_GENERATED_SECRET_BYTES). */
function checkSecretLimits(secrets: SecretDeclaration[], problems: Problems): void {
  if (secrets.length > MAX_SECRETS) {
    problems.add(['secrets'], `the session declares ${secrets.length} secrets; at most ${MAX_SECRETS} are allowed, split it into several sessions`, {
      expected: `at most ${MAX_SECRETS} secrets`,
      found: secrets.length,
    });
  }
  let generatedBytes = 0;
  for (const secret of secrets) {
    if ((secret.kind === 'ascii' || secret.kind === 'binary') && secret.value === undefined && secret.import === undefined) {
      generatedBytes += secret.size ?? 32; // 32 bytes without size, as in generateSecrets
    }
  }
  if (generatedBytes > MAX_GENERATED_SECRET_BYTES) {
    problems.add(['secrets'], `the generated ascii and binary secrets add up to ${generatedBytes} bytes; at most ${MAX_GENERATED_SECRET_BYTES} are allowed`, {
      expected: `at most ${MAX_GENERATED_SECRET_BYTES} bytes`,
      found: generatedBytes,
    });
  }
}

function checkVersion(raw: RawSession, problems: Problems): string {
  const version = String(raw.version);
  if (TEMPLATE_VARIABLE.test(version)) {
    problems.add(['version'], `${JSON.stringify(version)} contains an unrendered template variable; render the template first`, {
      found: version,
    });
  } else if (!SUPPORTED_VERSIONS.test(version)) {
    problems.add(['version'], `${JSON.stringify(version)} is not supported; supported versions are 0.3 and 0.3.x (for example "0.3" or "0.3.10")`, {
      expected: '0.3 or 0.3.x',
      found: version,
    });
  }
  return version;
}

function normaliseSecurity(raw: RawSession): AttestationSecurity {
  const attestation = raw.security?.attestation;
  const ignore = attestation?.ignore_advisories ?? [];
  return {
    mode: attestation?.mode ?? 'hardware',
    tolerate: [...new Set(attestation?.tolerate ?? [])],
    ignoreAdvisories: ignore === '*' ? '*' : [...new Set(ignore)],
  };
}

function normaliseVolumes(raw: RawSession, problems: Problems): Volume[] {
  const names = new Set<string>();
  return (raw.volumes ?? []).map((volume, index) => {
    if (names.has(volume.name)) problems.add(['volumes', index, 'name'], `duplicate volume name "${volume.name}"`);
    names.add(volume.name);
    return { name: volume.name };
  });
}

function normaliseImages(raw: RawSession, volumes: Volume[], problems: Problems): Image[] {
  const names = new Set<string>();
  return (raw.images ?? []).map((image, index) => {
    const path: KeyPath = ['images', index];
    if (names.has(image.name)) problems.add([...path, 'name'], `duplicate image name "${image.name}"`);
    names.add(image.name);

    const paths = new Set<string>();
    const injectionFiles = (image.injection_files ?? []).map((file, i) => {
      if (paths.has(file.path)) problems.add([...path, 'injection_files', i, 'path'], `duplicate injection file path "${file.path}"`);
      paths.add(file.path);
      return { path: file.path, content: file.content ?? '' };
    });

    const imageVolumes = (image.volumes ?? []).map((volume, i) => {
      if (!volumes.some((v) => v.name === volume.name)) {
        problems.add([...path, 'volumes', i, 'name'], `no volume named "${volume.name}" is declared under the top-level volumes`, {
          found: volume.name,
        });
      }
      return { name: volume.name, path: volume.path };
    });
    return { name: image.name, injectionFiles, volumes: imageVolumes };
  });
}

function normaliseAccessPolicy(raw: RawSession, problems: Problems): AccessPolicy {
  const policy = raw.access_policy ?? {};
  const list = (key: 'read' | 'update' | 'create_sessions'): PolicyEntry[] => {
    const entries = policy[key];
    if (entries === undefined) return [...DEFAULT_POLICY_LIST];

    const result: PolicyEntry[] = [];
    entries.forEach((entry, index) => {
      const parsed = parsePolicyEntry(entry);
      if ('error' in parsed) {
        const shown = entry.length > 40 ? `${entry.slice(0, 37)}...` : entry;
        problems.add(['access_policy', key, index], `invalid entry ${JSON.stringify(shown)}: ${parsed.error}`, { found: shown });
        return;
      }
      const duplicate = result.some((r) => JSON.stringify(r) === JSON.stringify(parsed));
      if (!duplicate) result.push(parsed);
    });
    if (result.some((e) => e.kind === 'none') && result.length > 1) {
      problems.add(['access_policy', key], 'NONE cannot be combined with other entries');
    }
    return result;
  };
  return { read: list('read'), update: list('update'), createSessions: list('create_sessions') };
}

/** Every placeholder in commands, environment values and injection files must name a secret of the session. */
function checkPlaceholders(session: Session, problems: Problems): void {
  const byName = new Map<string, SecretDeclaration>(session.secrets.map((s) => [s.name, s]));
  const check = (text: string, path: KeyPath): void => {
    const where = formatPath(path);
    try {
      for (const token of findPlaceholders(text, where)) {
        const reference = resolvePlaceholder(token, (name) => byName.has(name), where);
        const secret = byName.get(reference.secret) as SecretDeclaration;
        if (secret.kind !== undefined) checkFormatForKind(reference, secret.kind, where);

        const wantsKey = reference.format === 'key' || reference.format === 'privatekey';
        const certificateWithoutKey =
          (secret.kind === 'x509' || secret.kind === 'x509-ca') &&
          secret.import === undefined &&
          secret.value !== undefined &&
          secret.privateKey === undefined;
        if (wantsKey && certificateWithoutKey) {
          problems.addReference(path, `${reference.text} asks for the private key of "${secret.name}", a certificate given as value without private_key`, {
            found: reference.text,
          });
        }
      }
    } catch (error) {
      const details = (error as { details?: { found?: unknown } }).details;
      problems.addReference(path, (error as Error).message.replace(`${where}: `, ''), { found: details?.found });
    }
  };

  session.services.forEach((service, index) => {
    check(service.commandText, ['services', index, 'command']);
    for (const [key, value] of Object.entries(service.environment)) check(value, ['services', index, 'environment', key]);
  });
  session.images.forEach((image, index) => {
    image.injectionFiles.forEach((file, i) => check(file.content, ['images', index, 'injection_files', i, 'content']));
  });
}
