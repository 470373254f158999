import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { parseSession } from '../policy/parse-session.js';
import { sessionHash } from '../policy/session-hash.js';
import type { Session } from '../policy/types.js';
import { sharedDir } from '../testing/paths.js';
import { formatSecret } from './formats.js';
import { generateSecrets, resolveImports } from './generate.js';
import { createImportResolver, type ExportingSession } from './imports.js';
import { resolveServiceConfig } from './service-config.js';
import type { SecretImporter, StoredCertificate, StoredPrivateKey, StoredSecrets } from './types.js';

const sample = (relative: string) => readFileSync(join(sharedDir(), 'session-samples', relative), 'utf8');
const noImports: SecretImporter = () => assert.fail('no imports expected');
const DAY = 86400_000;

function session(body: string, name = 'test'): Session {
  return parseSession(`name: ${name}\nversion: "0.3"\nsecurity: {attestation: {mode: none}}\n${body}`);
}

function certificate(secrets: StoredSecrets, name: string): StoredCertificate {
  const value = secrets.secrets[name];
  assert.ok(value !== undefined && (value.kind === 'x509' || value.kind === 'x509-ca'), `${name} is a certificate`);
  return value;
}

async function rejectsWith(promise: Promise<unknown> | (() => unknown), code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(async () => (typeof promise === 'function' ? promise() : promise), (error: unknown) => {
    assert.ok(error instanceof CasError);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('generateSecrets kinds', () => {
  it('generates ascii and binary of the declared size', async () => {
    const s = session('secrets:\n  - {name: a, kind: ascii, size: 40}\n  - {name: d, kind: ascii}\n  - {name: b, kind: binary, size: 20}\n');
    const out = await generateSecrets(s, undefined, noImports);
    const a = out.secrets['a'];
    assert.ok(a?.kind === 'ascii');
    assert.match(a.value, /^[A-Za-z0-9]{40}$/);
    const d = out.secrets['d'];
    assert.ok(d?.kind === 'ascii');
    assert.equal(d.value.length, 32);
    const b = out.secrets['b'];
    assert.ok(b?.kind === 'binary');
    assert.equal(Buffer.from(b.valueBase64, 'base64').length, 20);
    assert.deepEqual(JSON.parse(JSON.stringify(out)), out);
  });

  it('uses explicit values as given', async () => {
    const s = session('secrets:\n  - {name: a, kind: ascii, value: "007"}\n  - {name: b, kind: binary, value: "00ff10"}\n');
    const out = await generateSecrets(s, undefined, noImports);
    const a = out.secrets['a'];
    const b = out.secrets['b'];
    assert.ok(a?.kind === 'ascii');
    assert.equal(a.value, '007');
    assert.ok(b?.kind === 'binary');
    assert.equal(b.valueBase64, Buffer.from([0, 255, 16]).toString('base64'));
  });

  for (const [keyType, check] of [
    ['P-256', { asymmetricKeyType: 'ec', namedCurve: 'prime256v1' }],
    ['P-384', { asymmetricKeyType: 'ec', namedCurve: 'secp384r1' }],
    ['Ed25519', { asymmetricKeyType: 'ed25519' }],
    ['RSA-2048', { asymmetricKeyType: 'rsa', modulusLength: 2048 }],
    ['RSA-3072', { asymmetricKeyType: 'rsa', modulusLength: 3072 }],
  ] as const) {
    it(`generates a ${keyType} key and a certificate for it`, async () => {
      const s = session(`secrets:\n  - {name: k, kind: private-key, key_type: ${keyType}}\n  - {name: c, kind: x509, private_key: k}\n`);
      const out = await generateSecrets(s, undefined, noImports);
      const key = out.secrets['k'] as StoredPrivateKey;
      const object = createPrivateKey(key.privateKeyPem as string);
      assert.equal(object.asymmetricKeyType, check.asymmetricKeyType);
      if ('namedCurve' in check) assert.equal(object.asymmetricKeyDetails?.namedCurve, check.namedCurve);
      if ('modulusLength' in check) assert.equal(object.asymmetricKeyDetails?.modulusLength, check.modulusLength);
      assert.equal(key.keyType, keyType);
      const cert = new X509Certificate(certificate(out, 'c').certificatePem);
      assert.ok(cert.checkPrivateKey(object));
      assert.ok(cert.verify(cert.publicKey), 'self-signed certificate verifies with its own key');
    });
  }

  it('defaults private keys to P-256', async () => {
    const out = await generateSecrets(session('secrets:\n  - {name: k, kind: private-key}\n'), undefined, noImports);
    assert.equal((out.secrets['k'] as StoredPrivateKey).keyType, 'P-256');
  });
});

describe('generateSecrets certificates', () => {
  it('issues a chain that verifies with SANs, usages and validity', async () => {
    const now = new Date('2026-06-01T00:00:00Z');
    const s = parseSession(sample('written/shop-database.yaml'));
    const out = await generateSecrets(s, undefined, noImports, { now });
    const ca = new X509Certificate(certificate(out, 'db_ca').certificatePem);
    const leaf = new X509Certificate(certificate(out, 'db_server').certificatePem);

    assert.ok(ca.ca);
    assert.ok(ca.verify(ca.publicKey));
    assert.equal(ca.subject, 'CN=shop database CA');
    assert.ok(!leaf.ca);
    assert.ok(leaf.checkIssued(ca));
    assert.ok(leaf.verify(ca.publicKey));
    assert.equal(leaf.subject, 'CN=database.shop.svc');
    assert.equal(leaf.subjectAltName, 'DNS:database.shop.svc, DNS:database');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(new Date(leaf.validTo).getTime(), now.getTime() + 90 * DAY);
    assert.equal(new Date(leaf.validFrom).getTime(), now.getTime() - 300_000);
    assert.equal(new Date(ca.validTo).getTime(), now.getTime() + 3650 * DAY);
    assert.ok(leaf.checkPrivateKey(createPrivateKey((out.secrets['db_server_key'] as StoredPrivateKey).privateKeyPem as string)));
    assert.deepEqual(certificate(out, 'db_server').chainPem, [certificate(out, 'db_ca').certificatePem]);
  });

  it('caps leaf validity at the issuer and sets client usage and IP SANs', async () => {
    const now = new Date('2026-06-01T00:00:00Z');
    const s = session('secrets:\n  - {name: ca, kind: x509-ca, valid_for: 10d}\n  - {name: c, kind: x509, issuer: ca, valid_for: 30d, endpoint: client, ip: ["10.0.0.1", "::1"]}\n');
    const out = await generateSecrets(s, undefined, noImports, { now });
    const leaf = new X509Certificate(certificate(out, 'c').certificatePem);
    assert.equal(new Date(leaf.validTo).getTime(), now.getTime() + 10 * DAY);
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(leaf.subjectAltName, 'IP Address:10.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.equal(leaf.subject, 'CN=c');
  });

  it('builds an intermediate chain', async () => {
    const s = session('secrets:\n  - {name: root, kind: x509-ca}\n  - {name: mid, kind: x509-ca, issuer: root}\n  - {name: leaf, kind: x509, issuer: mid, dns: [a.example]}\n');
    const out = await generateSecrets(s, undefined, noImports);
    const root = new X509Certificate(certificate(out, 'root').certificatePem);
    const mid = new X509Certificate(certificate(out, 'mid').certificatePem);
    const leaf = new X509Certificate(certificate(out, 'leaf').certificatePem);
    assert.ok(mid.verify(root.publicKey));
    assert.ok(leaf.verify(mid.publicKey));
    assert.ok(!leaf.verify(root.publicKey));
    const chain = formatSecret(certificate(out, 'leaf'), 'chain', 'leaf');
    assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 3);
  });

  it('keeps explicit certificates and keys from the spire sample', async () => {
    const out = await generateSecrets(parseSession(sample('public/spire-svid.yaml')), undefined, noImports);
    const svid = certificate(out, 'svid');
    assert.equal(svid.origin, 'explicit');
    assert.ok(svid.privateKeyPem !== undefined);
    assert.equal(svid.chainPem.length, 1);
    const leaf = new X509Certificate(svid.certificatePem);
    assert.ok(leaf.verify(new X509Certificate(svid.chainPem[0] as string).publicKey));
    assert.ok(leaf.checkPrivateKey(createPrivateKey(svid.privateKeyPem)));
  });
});

describe('generateSecrets updates', () => {
  const body = `secrets:
  - {name: pw, kind: ascii}
  - {name: kept_key, kind: private-key, migrate: true}
  - {name: fresh_key, kind: private-key}
  - {name: ca, kind: x509-ca, private_key: kept_key}
  - {name: leaf, kind: x509, issuer: ca, private_key: fresh_key}
  - {name: own, kind: x509, migrate: true}
`;

  it('keeps values and migrated keys, regenerates other keys', async () => {
    const first = await generateSecrets(session(body), undefined, noImports);
    const second = await generateSecrets(session(body), first, noImports);
    assert.deepEqual(second.secrets['pw'], first.secrets['pw']);
    assert.deepEqual(second.secrets['kept_key'], first.secrets['kept_key']);
    assert.notEqual((second.secrets['fresh_key'] as StoredPrivateKey).privateKeyPem, (first.secrets['fresh_key'] as StoredPrivateKey).privateKeyPem);
    assert.equal(certificate(second, 'ca').certificatePem, certificate(first, 'ca').certificatePem);
    assert.notEqual(certificate(second, 'leaf').certificatePem, certificate(first, 'leaf').certificatePem, 'leaf re-issued for its new key');
    assert.equal(certificate(second, 'own').certificatePem, certificate(first, 'own').certificatePem, 'migrated own key keeps its certificate');
  });

  it('regenerates when the declaration changes', async () => {
    const first = await generateSecrets(session(body), undefined, noImports);
    const changed = body.replace('{name: pw, kind: ascii}', '{name: pw, kind: ascii, size: 12}').replace('{name: own, kind: x509, migrate: true}', '{name: own, kind: x509, migrate: true, dns: [b.example]}');
    const second = await generateSecrets(session(changed), first, noImports);
    const pw = second.secrets['pw'];
    assert.ok(pw?.kind === 'ascii');
    assert.equal(pw.value.length, 12);
    assert.notEqual(certificate(second, 'own').certificatePem, certificate(first, 'own').certificatePem);
  });

  it('re-issues an expired certificate', async () => {
    const s = session('secrets:\n  - {name: k, kind: private-key, migrate: true}\n  - {name: c, kind: x509, private_key: k, valid_for: 1d}\n');
    const first = await generateSecrets(s, undefined, noImports, { now: new Date('2026-01-01T00:00:00Z') });
    const same = await generateSecrets(s, first, noImports, { now: new Date('2026-01-01T12:00:00Z') });
    const later = await generateSecrets(s, first, noImports, { now: new Date('2026-01-03T00:00:00Z') });
    assert.equal(certificate(same, 'c').certificatePem, certificate(first, 'c').certificatePem);
    assert.notEqual(certificate(later, 'c').certificatePem, certificate(first, 'c').certificatePem);
  });
});

describe('imports and exports', () => {
  function harness() {
    const stored = new Map<string, ExportingSession>();
    const importer = createImportResolver((name) => stored.get(name));
    const add = async (s: Session) => {
      const secrets = await generateSecrets(s, stored.get(s.name)?.secrets, importer);
      stored.set(s.name, { session: s, secrets, hash: sessionHash(s) });
      return secrets;
    };
    return { stored, importer, add };
  }

  it('imports the shop samples under their own names', async () => {
    const { add } = harness();
    await add(parseSession(sample('written/namespace.yaml')));
    const db = await add(parseSession(sample('written/shop-database.yaml')));
    const web = await add(parseSession(sample('written/shop-web.yaml')));
    assert.deepEqual(web.imports['database_password'], db.secrets['app_password']);
    assert.equal(certificate({ ...web, secrets: web.imports }, 'database_ca').certificatePem, certificate(db, 'db_ca').certificatePem);
  });

  it('denies a session not in the export list', async () => {
    const { add } = harness();
    await add(parseSession(sample('written/shop-database.yaml')));
    const intruder = session('secrets:\n  - name: stolen\n    import: {session: shop/database, secret: root_password}\n', 'shop/intruder');
    await rejectsWith(add(intruder), 'SECRET_REFERENCE_INVALID', /does not export secret "root_password" to session "shop\/intruder"/);
  });

  it('admits a namespace export and a matching session_hash only', async () => {
    const { add } = harness();
    const importerBody = 'secrets:\n  - name: got\n    import: {session: exporter, secret: token}\n';
    const importing = session(importerBody, 'team/app');
    await add(session('secrets:\n  - {name: token, kind: ascii, export: {namespace: team}}\n', 'exporter'));
    await add(importing);

    await add(session(`secrets:\n  - {name: token, kind: ascii, export: {session: team/app, session_hash: "${sessionHash(importing)}"}}\n`, 'exporter'));
    await add(importing);
    const changed = session(`${importerBody}access_policy: {read: [ANY]}\n`, 'team/app');
    await rejectsWith(add(changed), 'SECRET_REFERENCE_INVALID', /does not export/);
  });

  it('checks the pinned exporter hash', async () => {
    const { add } = harness();
    await add(session('secrets:\n  - {name: token, kind: ascii, export: {session: b}}\n', 'a'));
    const pinned = session(`secrets:\n  - name: t\n    import: {session: a, secret: token, session_hash: "${'0'.repeat(64)}"}\n`, 'b');
    await rejectsWith(add(pinned), 'SECRET_REFERENCE_INVALID', /pins session "a" to hash/);
  });

  it('exports only the public part with export_public', async () => {
    const { add } = harness();
    await add(parseSession(sample('public/spire-bundle.yaml')));
    const out = await add(session('secrets:\n  - name: bundle\n    import: {session: spire-ca-spire-ca, secret: spire-ca}\n', 'anyone'));
    const bundle = out.imports['bundle'] as StoredCertificate;
    assert.ok(bundle.certificatePem.includes('BEGIN CERTIFICATE'));
    assert.equal(bundle.privateKeyPem, undefined);
  });

  it('issues a local certificate from an imported CA', async () => {
    const { add } = harness();
    await add(session('secrets:\n  - {name: ca, kind: x509-ca, export: {session: b}}\n', 'a'));
    const out = await add(session('secrets:\n  - name: their_ca\n    import: {session: a, secret: ca}\n  - {name: leaf, kind: x509, issuer: their_ca, dns: [b.example]}\n', 'b'));
    const ca = out.imports['their_ca'] as StoredCertificate;
    const leaf = new X509Certificate(certificate(out, 'leaf').certificatePem);
    assert.ok(leaf.verify(new X509Certificate(ca.certificatePem).publicKey));
    assert.deepEqual(certificate(out, 'leaf').chainPem, [ca.certificatePem]);
  });

  it('resolveImports returns the current exporter values', async () => {
    const { add, importer } = harness();
    const exporter = session('secrets:\n  - {name: token, kind: ascii, export: {session: b}}\n', 'a');
    await add(exporter);
    const importing = session('secrets:\n  - name: t\n    import: {session: a, secret: token}\n', 'b');
    const stored = await add(importing);
    const renamed = session('secrets:\n  - {name: token, kind: ascii, size: 8, export: {session: b}}\n', 'a');
    const updated = await add(renamed);
    const fresh = await resolveImports(importing, importer);
    assert.deepEqual(fresh['t'], updated.secrets['token']);
    assert.notDeepEqual(fresh['t'], stored.imports['t']);
    const config = resolveServiceConfig({
      session: session('secrets:\n  - name: t\n    import: {session: a, secret: token}\nservices:\n  - {name: s, environment: {T: "$$SCONE::t$$"}}\n', 'b'),
      serviceName: 's',
      secrets: stored,
      importedSecrets: fresh,
      hostArgs: [],
      hostEnv: {},
    });
    assert.equal(config.environment['T'], (updated.secrets['token'] as { value: string }).value);
  });

  it('rejects a declared kind that differs from the exporter', async () => {
    const { add } = harness();
    await add(session('secrets:\n  - {name: token, kind: ascii, export: {session: b}}\n', 'a'));
    await rejectsWith(add(session('secrets:\n  - {name: t, kind: binary, import: {session: a, secret: token}}\n', 'b')), 'SECRET_REFERENCE_INVALID', /declared as binary/);
  });

  it('detects cyclic imports and names the cycle', async () => {
    const { add } = harness();
    await add(session('secrets:\n  - {name: x, kind: ascii, export: {session: b}}\n', 'a'));
    await add(session('secrets:\n  - name: y\n    import: {session: a, secret: x}\n    export: {session: a}\n', 'b'));
    const cyclic = session('secrets:\n  - name: x\n    import: {session: b, secret: y}\n    export: {session: b}\n', 'a');
    await rejectsWith(add(cyclic), 'SECRET_REFERENCE_INVALID', /cyclic import: a#x -> b#y -> a#x/);
  });

  it('rejects an unknown exporter or secret', async () => {
    const { add } = harness();
    await rejectsWith(add(session('secrets:\n  - name: t\n    import: {session: nowhere, secret: s}\n', 'b')), 'SECRET_REFERENCE_INVALID', /does not exist/);
    await add(session('secrets:\n  - {name: token, kind: ascii, export: {session: b}}\n', 'a'));
    await rejectsWith(add(session('secrets:\n  - name: t\n    import: {session: a, secret: other}\n', 'b')), 'SECRET_REFERENCE_INVALID', /has no secret "other"/);
  });
});

describe('placeholder formats', () => {
  it('renders every format of every kind', async () => {
    const s = session('secrets:\n  - {name: a, kind: ascii, value: "hi!"}\n  - {name: b, kind: binary, value: "00ff"}\n  - {name: k, kind: private-key}\n  - {name: c, kind: x509, private_key: k}\n');
    const out = await generateSecrets(s, undefined, noImports);
    const a = out.secrets['a']!;
    const b = out.secrets['b']!;
    const k = out.secrets['k'] as StoredPrivateKey;
    const c = certificate(out, 'c');

    assert.equal(formatSecret(a, undefined, 'a'), 'hi!');
    assert.equal(formatSecret(a, 'hex', 'a'), '686921');
    assert.equal(formatSecret(a, 'base64', 'a'), 'aGkh');
    assert.equal(formatSecret(b, undefined, 'b'), '00ff');
    assert.equal(formatSecret(b, 'hex', 'b'), '00ff');
    assert.equal(formatSecret(b, 'base64', 'b'), 'AP8=');
    for (const format of [undefined, 'pem', 'key', 'privatekey'] as const) {
      assert.match(formatSecret(k, format, 'k'), /^-----BEGIN PRIVATE KEY-----/);
    }
    assert.match(formatSecret(k, 'publickey', 'k'), /^-----BEGIN PUBLIC KEY-----/);
    for (const format of [undefined, 'pem', 'crt'] as const) assert.equal(formatSecret(c, format, 'c'), c.certificatePem);
    assert.equal(formatSecret(c, 'chain', 'c'), c.certificatePem);
    assert.equal(formatSecret(c, 'key', 'c'), k.privateKeyPem);
    assert.equal(formatSecret(c, 'privatekey', 'c'), k.privateKeyPem);
    assert.equal(formatSecret(c, 'publickey', 'c'), createPublicKey(k.privateKeyPem as string).export({ type: 'spki', format: 'pem' }));
    assert.throws(() => formatSecret(a, 'crt', 'a'), /format "crt" does not apply to ascii/);
    assert.throws(() => formatSecret({ ...c, privateKeyPem: undefined } as StoredCertificate, 'key', 'c'), /no private key/);
  });
});

describe('resolveServiceConfig', () => {
  it('fills @@1, host environment and placeholders for shop-web', async () => {
    const db = parseSession(sample('written/shop-database.yaml'));
    const dbSecrets = await generateSecrets(db, undefined, noImports);
    const importer = createImportResolver((name) => (name === db.name ? { session: db, secrets: dbSecrets } : undefined));
    const web = parseSession(sample('written/shop-web.yaml'));
    const secrets = await generateSecrets(web, undefined, importer);

    const config = resolveServiceConfig({
      session: web,
      serviceName: 'api',
      secrets,
      hostArgs: ['--verbose $$SCONE::session_key$$'],
      hostEnv: { HOSTNAME: 'node-7', DATABASE_PASSWORD: 'from-host' },
    });
    assert.deepEqual(config.command, ['node', '/app/server.js', '--port', '8443', '--verbose $$SCONE::session_key$$']);
    assert.equal(config.environment['HOSTNAME'], 'node-7');
    assert.equal(config.environment['\\@\\@HOSTNAME'], undefined);
    assert.equal(config.environment['DATABASE_PASSWORD'], (dbSecrets.secrets['app_password'] as { value: string }).value);
    assert.equal(config.environment['DATABASE_CA'], certificate(dbSecrets, 'db_ca').certificatePem);
    assert.equal(config.environment['SESSION_KEY_B64'], (secrets.secrets['session_key'] as { valueBase64: string }).valueBase64);
    assert.equal(config.pwd, '/app');
    assert.deepEqual(config.injectionFiles.map((f) => f.path), ['/app/config.json', '/app/db-ca.crt']);
    assert.equal(config.injectionFiles[1]?.content, certificate(dbSecrets, 'db_ca').certificatePem);
    assert.match(config.injectionFiles[0]?.content ?? '', /"tls_ca": "\/app\/db-ca.crt"/);
  });

  it('uses the session value when the host lacks the variable', async () => {
    const s = session('services:\n  - name: s\n    environment: {"\\\\@\\\\@REGION": "eu"}\n');
    const config = resolveServiceConfig({ session: s, serviceName: 's', secrets: await generateSecrets(s, undefined, noImports), hostArgs: [], hostEnv: {} });
    assert.deepEqual(config.environment, { REGION: 'eu' });
  });

  it('resolves legacy suffixes and keeps secret values in one argument', async () => {
    const s = parseSession(sample('written/shop-database.yaml'));
    const secrets = await generateSecrets(s, undefined, noImports);
    const config = resolveServiceConfig({ session: s, serviceName: 'mariadb', secrets, hostArgs: [], hostEnv: {} });
    assert.equal(config.injectionFiles[0]?.content, certificate(secrets, 'db_server').certificatePem);
    assert.equal(config.injectionFiles[1]?.content, (secrets.secrets['db_server_key'] as StoredPrivateKey).privateKeyPem);
    assert.equal(config.injectionFiles[2]?.content, certificate(secrets, 'db_ca').certificatePem);

    const dev = parseSession(sample('written/simulated-dev.yaml'));
    const devConfig = resolveServiceConfig({ session: dev, serviceName: 'hello', secrets: await generateSecrets(dev, undefined, noImports), hostArgs: [], hostEnv: {} });
    assert.deepEqual(devConfig.command, ['python3', '/app/hello.py', '--greeting', 'hello, attested world']);
  });

  it('ignores inherited names in secrets and host environment', async () => {
    const s = session('secrets:\n  - {name: constructor, kind: ascii, value: own}\nservices:\n  - name: s\n    environment: {"\\\\@\\\\@toString": "default", V: "$$SCONE::constructor$$"}\n');
    const secrets = await generateSecrets(s, JSON.parse('{"format":1,"secrets":{},"imports":{}}') as StoredSecrets, noImports);
    const config = resolveServiceConfig({ session: s, serviceName: 's', secrets, hostArgs: [], hostEnv: {} });
    assert.equal(config.environment['V'], 'own');
    assert.equal(config.environment['toString'], 'default');
  });

  it('substitutes the exact name before a legacy suffix', async () => {
    const s = session('secrets:\n  - {name: a, kind: ascii, value: short}\n  - {name: a.crt, kind: ascii, value: dotted}\nservices:\n  - name: s\n    environment: {A: "$$SCONE::a.crt$$"}\n');
    const config = resolveServiceConfig({ session: s, serviceName: 's', secrets: await generateSecrets(s, undefined, noImports), hostArgs: [], hostEnv: {} });
    assert.equal(config.environment['A'], 'dotted');
  });

  it('rejects an unknown service and a missing host argument', async () => {
    const s = session('services:\n  - name: s\n    command: run @@2\n');
    const secrets = await generateSecrets(s, undefined, noImports);
    await rejectsWith(() => resolveServiceConfig({ session: s, serviceName: 'other', secrets, hostArgs: [], hostEnv: {} }), 'SERVICE_NOT_FOUND', /no service "other"/);
    await rejectsWith(() => resolveServiceConfig({ session: s, serviceName: 's', secrets, hostArgs: ['one'], hostEnv: {} }), 'INVALID_ARGUMENT', /@@2, but the host gave 1 argument/);
  });
});
