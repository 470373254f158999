import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { sharedDir } from '../testing/paths.js';
import { issueCertificate } from '../secrets/certificates.js';
import { parseSession } from './parse-session.js';

const samples = join(sharedDir(), 'session-samples');

function sample(relative: string): string {
  return readFileSync(join(samples, relative), 'utf8');
}

function rejects(text: string, code: 'SESSION_INVALID' | 'SECRET_REFERENCE_INVALID' = 'SESSION_INVALID'): CasError {
  try {
    parseSession(text);
  } catch (error) {
    assert.ok(error instanceof CasError, `expected CasError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail('parseSession accepted an invalid session');
}

const MRENCLAVE = 'ab'.repeat(32);

/** Issues a fresh self-signed CA certificate for the same subject as the spire sample CA. */
async function foreignCaPem(): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return issueCertificate({
    commonName: 'sample-spire-ca',
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyType: 'P-256',
    ca: true,
    dns: [],
    ip: [],
    notBefore: new Date(),
    notAfter: new Date(Date.now() + 86400_000),
    signer: { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, keyType: 'P-256' },
  });
}
const base = (extra: string) => `name: app\nversion: "0.3"\n${extra}`;

describe('parseSession samples', () => {
  for (const dir of ['public', 'written']) {
    for (const file of readdirSync(join(samples, dir)).filter((f) => !f.startsWith('invalid-'))) {
      it(`loads ${dir}/${file}`, () => {
        const session = parseSession(sample(`${dir}/${file}`));
        assert.ok(session.name.length > 0);
        assert.match(session.version, /^0\.3/);
      });
    }
  }

  it('rejects invalid-old-version naming the supported versions', () => {
    const error = rejects(sample('written/invalid-old-version.yaml'));
    assert.match(error.message, /version/);
    assert.match(error.message, /"0\.2" is not supported/);
    assert.match(error.message, /0\.3 and 0\.3\.x/);
    assert.equal(error.details?.['path'], 'version');
    assert.equal(error.details?.['found'], '0.2');
    assert.equal(error.details?.['line'], 3);
  });

  it('rejects invalid-unrendered-template naming field and value', () => {
    const error = rejects(sample('written/invalid-unrendered-template.yaml'));
    assert.equal(error.details?.['path'], 'name');
    assert.equal(error.details?.['found'], '$SESSION');
    assert.match(error.message, /name: "\$SESSION" contains the unrendered template variable/);
    assert.match(error.message, /services\[0\]\.mrenclaves\[0\]: "\$MRENCLAVE"/);
  });

  it('rejects invalid-indentation with line and column', () => {
    const error = rejects(sample('written/invalid-indentation.yaml'));
    assert.match(error.message, /^invalid YAML at line \d+, column \d+: /);
    assert.equal(typeof error.details?.['line'], 'number');
    assert.equal(typeof error.details?.['column'], 'number');
    assert.ok((error.details?.['line'] as number) >= 6);
  });
});

describe('parseSession normalisation', () => {
  it('keeps "007" and unquoted numbers as written in environment', () => {
    const session = parseSession(sample('written/simulated-dev.yaml'));
    assert.equal(session.services[0]?.environment['PLAIN'], '007');
    const unquoted = parseSession(base(`security: {attestation: {mode: none}}\nservices:\n  - name: s\n    environment:\n      A: 007\n      B: 8080\n      C: true\n      D:\n`));
    assert.deepEqual(unquoted.services[0]?.environment, { A: '007', B: '8080', C: 'true', D: '' });
  });

  it('accepts every version spelling', () => {
    for (const version of ['"0.3"', "'0.3'", '"0.3.10"', '0.3.10', '0.3']) {
      const session = parseSession(`name: v\nversion: ${version}\n`);
      assert.equal(session.version, version.replace(/["']/g, ''));
    }
  });

  it('normalises mrenclaves and attestation forms', () => {
    const upper = MRENCLAVE.toUpperCase();
    const a = parseSession(base(`services:\n  - name: s\n    mrenclaves: ["${upper}"]\n`));
    const b = parseSession(base(`services:\n  - name: s\n    attestation: {mrenclave: "${MRENCLAVE}"}\n`));
    assert.deepEqual(a.services[0]?.attestation, [{ kind: 'mrenclave', mrenclave: [MRENCLAVE] }]);
    assert.deepEqual(b.services[0]?.attestation, a.services[0]?.attestation);
  });

  it('normalises signer, tdx and snp variants', () => {
    const session = parseSession(
      base(`services:
  - name: s
    attestation:
      - signer: {mrsigner: "${'CD'.repeat(32)}", isvprodid: 41, isvsvn_min: 3}
      - tdx: {mrtd: "${'11'.repeat(48)}", rtmr0: "${'22'.repeat(48)}", td_attributes: "0000000010000000", xfam: "E71A060000000000"}
      - snp: {measurement: ["${'33'.repeat(48)}"], policy: "0x30000", host_data: "${'44'.repeat(32)}"}
`),
    );
    assert.deepEqual(session.services[0]?.attestation, [
      { kind: 'signer', mrsigner: 'cd'.repeat(32), isvprodid: 41, isvsvnMin: 3 },
      { kind: 'tdx', mrtd: ['11'.repeat(48)], rtmr0: '22'.repeat(48), tdAttributes: '0000000010000000', xfam: 'e71a060000000000' },
      { kind: 'snp', measurement: ['33'.repeat(48)], policy: 0x30000, hostData: '44'.repeat(32) },
    ]);
  });

  it('splits the command like a shell and keeps the text', () => {
    const session = parseSession(sample('written/simulated-dev.yaml'));
    assert.deepEqual(session.services[0]?.command, ['python3', '/app/hello.py', '--greeting', '$$SCONE::greeting$$']);
    assert.equal(session.services[0]?.commandText, 'python3 /app/hello.py --greeting "$$SCONE::greeting$$"');
  });

  it('applies defaults for access policy and security', () => {
    const session = parseSession('name: plain\nversion: "0.3"\n');
    assert.deepEqual(session.accessPolicy, { read: [{ kind: 'creator' }], update: [{ kind: 'creator' }], createSessions: [{ kind: 'creator' }] });
    assert.deepEqual(session.security, { mode: 'hardware', tolerate: [], ignoreAdvisories: [] });
  });

  it('reads the namespace policy and advisories', () => {
    const ns = parseSession(sample('written/namespace.yaml'));
    assert.deepEqual(ns.accessPolicy, { read: [{ kind: 'any' }], update: [{ kind: 'none' }], createSessions: [{ kind: 'any' }] });
    const web = parseSession(sample('written/shop-web.yaml'));
    assert.equal(web.security.ignoreAdvisories, '*');
    assert.deepEqual(web.security.tolerate, ['software-hardening-needed', 'insecure-configuration']);
  });

  it('normalises a single export mapping and imports', () => {
    const svid = parseSession(sample('public/spire-svid.yaml'));
    assert.deepEqual(svid.secrets[0]?.export, [
      { session: 'confidential-apps/mariadb-1', sessionHash: '6b0809147960299701c5199e1200f2272b0be65a861e03c1a86fdfd9d9ff010d' },
    ]);
    const web = parseSession(sample('written/shop-web.yaml'));
    assert.deepEqual(web.secrets[0]?.import, { session: 'shop/database', secret: 'db_ca' });
    assert.equal(web.secrets[0]?.kind, undefined);
  });
});

describe('parseSession rejections', () => {
  it('names an unknown top-level key', () => {
    const error = rejects(base('servces: []\n'));
    assert.equal(error.details?.['path'], 'servces');
    assert.match(error.message, /unknown key "servces"/);
    assert.equal(error.details?.['line'], 3);
  });

  it('names an unknown nested key with its path', () => {
    const error = rejects(base(`services:\n  - name: s\n    mrenclaves: ["${MRENCLAVE}"]\n    comand: /bin/x\n`));
    assert.equal(error.details?.['path'], 'services[0].comand');
    assert.match(error.message, /unknown key "comand" at services\[0\]/);
  });

  it('names unknown keys at every level', () => {
    const cases: [string, string][] = [
      ['security: {attestation: {mode: none, tolerates: []}}\n', 'security.attestation.tolerates'],
      ['secrets:\n  - {name: s, import: {session: a, secret: b, hash: x}}\n', 'secrets[0].import.hash'],
      ['secrets:\n  - {name: s, kind: ascii, export: {session: a, sesion_hash: x}}\n', 'secrets[0].export.sesion_hash'],
      ['images:\n  - {name: i, injection_files: [{path: /a, contents: x}]}\n', 'images[0].injection_files[0].contents'],
      ['access_policy: {delete: [ANY]}\n', 'access_policy.delete'],
    ];
    for (const [extra, path] of cases) {
      const error = rejects(base(extra));
      assert.equal(error.details?.['path'], path);
      assert.equal(typeof error.details?.['line'], 'number', path);
    }
  });

  it('names a bad key inside a list of attestation variants', () => {
    const error = rejects(base(`services:\n  - name: s\n    attestation:\n      - mrenclave: ["${MRENCLAVE}"]\n      - signer: {mrsigner: "zz"}\n`));
    assert.equal(error.details?.['path'], 'services[0].attestation[1].signer.mrsigner');
    assert.equal(error.details?.['found'], '"zz"');
  });

  it('rejects a variant mixing mrenclave and signer', () => {
    const error = rejects(base(`services:\n  - name: s\n    attestation: {mrenclave: "${MRENCLAVE}", signer: {mrsigner: "${MRENCLAVE}"}}\n`));
    assert.equal(error.details?.['path'], 'services[0].attestation');
    assert.match(error.message, /exactly one of mrenclave, signer, tdx or snp/);
  });

  it('rejects a hardware service without attestation', () => {
    const error = rejects(base('services:\n  - name: s\n    command: /bin/true\n'));
    assert.equal(error.details?.['path'], 'services[0]');
    assert.match(error.message, /no attestation requirement/);
  });

  it('rejects a bad session name', () => {
    for (const name of ['"a//b"', '"/a"', '"a/"', '".hidden"', '"a b"']) {
      const error = rejects(`name: ${name}\nversion: "0.3"\n`);
      assert.equal(error.details?.['path'], 'name', name);
    }
  });

  it('rejects a missing version', () => {
    const error = rejects('name: a\n');
    assert.equal(error.details?.['path'], 'version');
    assert.match(error.message, /version is missing/);
  });

  it('rejects {{var}} templates in names', () => {
    const error = rejects(`name: "{{ session }}"\nversion: "0.3"\n`);
    assert.match(error.message, /\{\{ session \}\}/);
  });

  it('rejects a non-string environment collection', () => {
    const error = rejects(base(`services:\n  - name: s\n    mrenclaves: ["${MRENCLAVE}"]\n    environment:\n      A: [1, 2]\n`));
    assert.equal(error.details?.['path'], 'services[0].environment.A');
  });

  it('rejects an unknown image_name', () => {
    const error = rejects(base(`services:\n  - name: s\n    image_name: nope\n    mrenclaves: ["${MRENCLAVE}"]\n`));
    assert.equal(error.details?.['path'], 'services[0].image_name');
    assert.match(error.message, /no image named "nope"/);
  });

  it('rejects an image volume not declared at top level', () => {
    const error = rejects(base('images:\n  - name: i\n    volumes: [{name: v, path: /v}]\n'));
    assert.equal(error.details?.['path'], 'images[0].volumes[0].name');
  });

  it('rejects keys that do not apply to a kind', () => {
    const error = rejects(base('secrets:\n  - name: k\n    kind: private-key\n    size: 32\n'));
    assert.equal(error.details?.['path'], 'secrets[0].size');
    assert.match(error.message, /"size" does not apply to a private-key secret/);
  });

  it('rejects a secret without kind or import', () => {
    const error = rejects(base('secrets:\n  - name: k\n'));
    assert.equal(error.details?.['path'], 'secrets[0].kind');
  });

  it('rejects an invalid private key value without echoing it', () => {
    const error = rejects(base('secrets:\n  - name: k\n    kind: private-key\n    value: "hunter2-not-a-key"\n'));
    assert.equal(error.details?.['path'], 'secrets[0].value');
    assert.doesNotMatch(error.message, /hunter2/);
    assert.doesNotMatch(JSON.stringify(error.details), /hunter2/);
  });

  it('rejects a wrongly typed secret value without echoing it', () => {
    const error = rejects(base('secrets:\n  - name: k\n    kind: ascii\n    value: [123456789]\n'));
    assert.doesNotMatch(error.message, /123456789/);
  });

  it('rejects an invalid SAN and validity', () => {
    const error = rejects(base('secrets:\n  - name: c\n    kind: x509\n    dns: ["bad_name!"]\n    ip: ["300.1.1.1"]\n'));
    assert.equal(error.details?.['path'], 'secrets[0].dns[0]');
    assert.match(error.message, /secrets\[0\]\.ip\[0\]/);
    const validity = rejects(base('secrets:\n  - name: c\n    kind: x509\n    valid_for: 90 days\n'));
    assert.equal(validity.details?.['path'], 'secrets[0].valid_for');
  });

  it('rejects NONE combined with other entries', () => {
    const error = rejects(base('access_policy:\n  read: [NONE, ANY]\n'));
    assert.equal(error.details?.['path'], 'access_policy.read');
  });

  it('rejects an unknown access policy entry', () => {
    const error = rejects(base('access_policy:\n  update: [OWNER]\n'));
    assert.equal(error.details?.['path'], 'access_policy.update[0]');
    assert.match(error.message, /"OWNER"/);
  });

  it('rejects duplicate keys in YAML with a position', () => {
    const error = rejects('name: a\nname: b\nversion: "0.3"\n');
    assert.match(error.message, /^invalid YAML at line 2, column 1/);
  });

  it('rejects __proto__ keys with a position', () => {
    const error = rejects(base('security: {attestation: {mode: none}}\nservices:\n  - name: s\n    environment: {__proto__: x}\n'));
    assert.match(error.message, /"__proto__" is not allowed \(line 6, column 19\)/);
  });

  it('rejects a document that is not a mapping', () => {
    const error = rejects('- a\n- b\n');
    assert.equal(error.details?.['path'], '(document)');
  });
});

describe('parseSession secret references', () => {
  it('rejects a placeholder naming no secret', () => {
    const error = rejects(base(`services:\n  - name: s\n    mrenclaves: ["${MRENCLAVE}"]\n    command: run $$SCONE::missing$$\n`), 'SECRET_REFERENCE_INVALID');
    assert.equal(error.details?.['path'], 'services[0].command');
    assert.match(error.message, /no secret named "missing"/);
  });

  it('rejects an unknown format and a format for the wrong kind', () => {
    const secrets = 'secrets:\n  - name: pw\n    kind: ascii\n';
    const unknown = rejects(base(`${secrets}services:\n  - name: s\n    mrenclaves: ["${MRENCLAVE}"]\n    environment: {A: "$$SCONE::pw:bogus$$"}\n`), 'SECRET_REFERENCE_INVALID');
    assert.match(unknown.message, /unknown format "bogus"/);
    assert.equal(unknown.details?.['path'], 'services[0].environment.A');
    const wrongKind = rejects(base(`${secrets}services:\n  - name: s\n    mrenclaves: ["${MRENCLAVE}"]\n    environment: {A: "$$SCONE::pw:crt$$"}\n`), 'SECRET_REFERENCE_INVALID');
    assert.match(wrongKind.message, /format "crt" does not apply to ascii secret "pw"/);
  });

  it('rejects an unclosed placeholder', () => {
    const error = rejects(base(`secrets:\n  - {name: pw, kind: ascii}\nimages:\n  - name: i\n    injection_files: [{path: /f, content: "x $$SCONE::pw"}]\n`), 'SECRET_REFERENCE_INVALID');
    assert.equal(error.details?.['path'], 'images[0].injection_files[0].content');
  });

  it('accepts legacy dot suffixes only for declared secrets', () => {
    const session = parseSession(sample('written/shop-database.yaml'));
    assert.equal(session.images[0]?.injectionFiles[0]?.content, '$$SCONE::db_server.crt$$');
    const error = rejects(base(`secrets:\n  - {name: pw, kind: ascii}\nimages:\n  - name: i\n    injection_files: [{path: /f, content: "$$SCONE::other.crt$$"}]\n`), 'SECRET_REFERENCE_INVALID');
    assert.match(error.message, /no secret named "other.crt"/);
  });

  it('prefers an exact secret name over a legacy suffix', () => {
    const session = parseSession(base('security: {attestation: {mode: none}}\nsecrets:\n  - {name: a, kind: ascii}\n  - {name: a.crt, kind: ascii}\nservices:\n  - name: s\n    environment: {A: "$$SCONE::a.crt$$"}\n'));
    assert.equal(session.secrets.length, 2);
    const error = rejects(base('security: {attestation: {mode: none}}\nsecrets:\n  - {name: a, kind: ascii}\nservices:\n  - name: s\n    environment: {A: "$$SCONE::a.crt$$"}\n'), 'SECRET_REFERENCE_INVALID');
    assert.match(error.message, /format "crt" does not apply to ascii secret "a"/);
  });

  it('rejects private_key and issuer naming the wrong secrets', () => {
    const missing = rejects(base('secrets:\n  - {name: c, kind: x509, private_key: nokey}\n'), 'SECRET_REFERENCE_INVALID');
    assert.equal(missing.details?.['path'], 'secrets[0].private_key');
    const wrongKind = rejects(base('secrets:\n  - {name: pw, kind: ascii}\n  - {name: c, kind: x509, issuer: pw}\n'), 'SECRET_REFERENCE_INVALID');
    assert.match(wrongKind.message, /must name an x509-ca secret/);
    const cycle = rejects(base('secrets:\n  - {name: a, kind: x509-ca, issuer: b}\n  - {name: b, kind: x509-ca, issuer: a}\n'), 'SECRET_REFERENCE_INVALID');
    assert.match(cycle.message, /cyclic/);
  });

  it('rejects an explicit CA without key as issuer of a generated certificate', () => {
    const bundle = parseSession(sample('public/spire-bundle.yaml'));
    const pem = bundle.secrets[0]?.value as string;
    const indented = pem.trim().split('\n').map((l) => `      ${l}`).join('\n');
    const error = rejects(base(`secrets:\n  - name: ca\n    kind: x509-ca\n    value: |\n${indented}\n  - {name: leaf, kind: x509, issuer: ca}\n`), 'SECRET_REFERENCE_INVALID');
    assert.match(error.message, /cannot sign a generated certificate/);
  });

  it('rejects :key of a certificate given without private key', () => {
    const bundle = parseSession(sample('public/spire-bundle.yaml'));
    const indented = (bundle.secrets[0]?.value as string).trim().split('\n').map((l) => `      ${l}`).join('\n');
    const error = rejects(
      base(`security: {attestation: {mode: none}}\nsecrets:\n  - name: ca\n    kind: x509-ca\n    value: |\n${indented}\nservices:\n  - name: s\n    environment: {K: "$$SCONE::ca:key$$"}\n`),
      'SECRET_REFERENCE_INVALID',
    );
    assert.match(error.message, /asks for the private key of "ca"/);
  });

  it('checks that an explicit certificate was signed by its issuer', async () => {
    const svid = sample('public/spire-svid.yaml');
    const foreign = await foreignCaPem();
    const indented = foreign.trim().split('\n').map((l) => `        ${l}`).join('\n');
    const swapped = svid.replace(/(- name: svid-intermediates\n    kind: x509-ca\n    value: \|\n)        -----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/, (_m, head: string) => `${head}${indented}`);
    assert.notEqual(swapped, svid);
    const error = rejects(swapped, 'SECRET_REFERENCE_INVALID');
    assert.match(error.message, /not signed by issuer "svid-intermediates"/);
  });

  it('checks that an explicit certificate matches its key', () => {
    const svid = sample('public/spire-svid.yaml');
    assert.doesNotThrow(() => parseSession(svid));
    const otherPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const otherIndented = otherPem.trim().split('\n').map((l) => `        ${l}`).join('\n');
    const otherKey = svid.replace(/        -----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/, otherIndented);
    assert.notEqual(otherKey, svid);
    const error = rejects(otherKey, 'SECRET_REFERENCE_INVALID');
    assert.match(error.message, /does not match the certificate's public key/);
  });
});
