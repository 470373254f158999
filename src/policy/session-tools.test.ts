import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { sharedDir } from '../testing/paths.js';
import { isAllowed, parentNamespaces, publicKeyHashOfCertificate } from './access.js';
import { splitCommandLine } from './command-line.js';
import { parseSession, REDACTED_VALUE } from './parse-session.js';
import { renderSessionForRead, toSessionDocument } from './render.js';
import { canonicalJson, sessionHash } from './session-hash.js';
import { substituteVariables } from './substitute-variables.js';
import { stringify } from 'yaml';

const sample = (relative: string) => readFileSync(join(sharedDir(), 'session-samples', relative), 'utf8');

describe('substituteVariables', () => {
  it('replaces named $VAR and ${VAR}', () => {
    assert.equal(substituteVariables('name: $SESSION\nother: ${SESSION}-x', { SESSION: 'shop/web' }), 'name: shop/web\nother: shop/web-x');
  });

  it('leaves unnamed variables untouched', () => {
    assert.equal(substituteVariables('a: $OTHER ${OTHER} $SESSION_NAME', { SESSION: 'x' }), 'a: $OTHER ${OTHER} $SESSION_NAME');
  });

  it('never touches SCONE placeholders', () => {
    const text = 'k: $$SCONE::SCONE$$ $$SCONE::db:crt$$ $SCONE';
    assert.equal(substituteVariables(text, { SCONE: 'v', db: 'no' }), 'k: $$SCONE::SCONE$$ $$SCONE::db:crt$$ v');
  });

  it('inserts values literally', () => {
    assert.equal(substituteVariables('x: $A', { A: '$B $$ $1' , B: 'no' }), 'x: $B $$ $1');
  });

  it('renders the unrendered sample into a valid session', () => {
    const text = substituteVariables(sample('written/invalid-unrendered-template.yaml'), { SESSION: 'rendered', MRENCLAVE: 'ab'.repeat(32) });
    assert.equal(parseSession(text).name, 'rendered');
  });
});

describe('splitCommandLine', () => {
  const cases: [string, string[]][] = [
    ['a  b\tc', ['a', 'b', 'c']],
    [`a 'b c' "d e"`, ['a', 'b c', 'd e']],
    [`x"y"'z'`, ['xyz']],
    [`"a \\"q\\" \\$HOME \\n"`, ['a "q" $HOME \\n']],
    ['a\\ b', ['a b']],
    ['""', ['']],
    ['', []],
  ];
  for (const [input, argv] of cases) {
    it(`splits ${JSON.stringify(input)}`, () => assert.deepEqual(splitCommandLine(input), { argv }));
  }
  it('reports unterminated quotes', () => {
    assert.ok('error' in splitCommandLine(`a 'b`));
    assert.ok('error' in splitCommandLine('a "b'));
    assert.ok('error' in splitCommandLine('a \\'));
  });
});

describe('sessionHash', () => {
  it('is stable across key order, quoting and comments', () => {
    const a = 'name: h\nversion: "0.3"\nsecurity:\n  attestation:\n    mode: none\nservices:\n  - name: s\n    command: run it\n    environment: {A: "1", B: x}\n';
    const b = "# comment\nservices:\n  - environment:\n      B: 'x'   # trailing\n      A: 1\n    command: \"run it\"\n    name: 's'\nversion: '0.3'\nsecurity: {attestation: {mode: none}}\nname: h\n";
    assert.equal(sessionHash(parseSession(a)), sessionHash(parseSession(b)));
  });

  it('is equal for mrenclaves and attestation spellings', () => {
    const m = 'ab'.repeat(32);
    const a = parseSession(`name: h\nversion: "0.3"\nservices:\n  - name: s\n    mrenclaves: ["${m}"]\n`);
    const b = parseSession(`name: h\nversion: "0.3"\nservices:\n  - name: s\n    attestation: [{mrenclave: "${m.toUpperCase()}"}]\n`);
    assert.equal(sessionHash(a), sessionHash(b));
  });

  it('is equal for defaults written out and single exports', () => {
    const a = parseSession('name: h\nversion: "0.3"\nsecrets:\n  - {name: s, kind: ascii, export: {session: x}}\n');
    const b = parseSession('name: h\nversion: "0.3"\nsecrets:\n  - {name: s, kind: ascii, export: [{session: x}]}\naccess_policy: {read: [CREATOR], update: [CREATOR], create_sessions: [CREATOR]}\nsecurity: {attestation: {mode: hardware}}\n');
    assert.equal(sessionHash(a), sessionHash(b));
  });

  it('survives a JSON round trip of every sample', () => {
    for (const file of ['written/shop-web.yaml', 'written/simulated-dev.yaml', 'public/spire-svid.yaml', 'public/iexec-task.yaml']) {
      const session = parseSession(sample(file));
      assert.equal(sessionHash(JSON.parse(JSON.stringify(session)) as typeof session), sessionHash(session), file);
    }
  });

  it('changes when content changes', () => {
    const a = parseSession('name: h\nversion: "0.3"\n');
    const b = parseSession('name: h\nversion: "0.3"\naccess_policy: {read: [ANY]}\n');
    const c = parseSession(`name: h\nversion: "0.3"\npredecessor: "${'0'.repeat(64)}"\n`);
    assert.notEqual(sessionHash(a), sessionHash(b));
    assert.notEqual(sessionHash(a), sessionHash(c));
  });

  it('hashes the documented encoding', () => {
    const session = parseSession('name: h\nversion: "0.3"\n');
    const expected = createHash('sha256').update('cas-session-v1\n').update(canonicalJson(session)).digest('hex');
    assert.equal(sessionHash(session), expected);
    assert.match(canonicalJson(session), /^\{"accessPolicy":\{"createSessions":\[\{"kind":"creator"\}\]/);
  });

  it('canonicalJson sorts keys and rejects non-JSON', () => {
    assert.equal(canonicalJson({ b: 1, a: [true, null, 'x'], c: undefined }), '{"a":[true,null,"x"],"b":1}');
    assert.throws(() => canonicalJson({ a: Number.NaN }), TypeError);
    assert.throws(() => canonicalJson({ a: 1n }), TypeError);
  });
});

async function certificatePem(keys: webcrypto.CryptoKeyPair, cn: string): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${cn}`,
    keys: keys as unknown as CryptoKeyPairLike,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    notBefore: new Date(),
    notAfter: new Date(Date.now() + 86400_000),
  });
  return cert.toString('pem');
}

type CryptoKeyPairLike = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];

describe('access policy', () => {
  const creator = 'aa'.repeat(32);
  const other = 'bb'.repeat(32);

  it('defaults to the creator only', () => {
    const policy = parseSession('name: p\nversion: "0.3"\n').accessPolicy;
    for (const action of ['read', 'update', 'create_sessions'] as const) {
      assert.equal(isAllowed(policy, action, { keyHash: creator }, creator), true);
      assert.equal(isAllowed(policy, action, { keyHash: other }, creator), false);
    }
  });

  it('applies ANY and NONE', () => {
    const policy = parseSession(sample('written/namespace.yaml')).accessPolicy;
    assert.equal(isAllowed(policy, 'read', { keyHash: other }, creator), true);
    assert.equal(isAllowed(policy, 'create_sessions', { keyHash: other }, creator), true);
    assert.equal(isAllowed(policy, 'update', { keyHash: creator }, creator), false);
  });

  it('matches key hashes case-insensitively', () => {
    const policy = parseSession(`name: p\nversion: "0.3"\naccess_policy: {read: ["${other.toUpperCase()}"]}\n`).accessPolicy;
    assert.equal(isAllowed(policy, 'read', { keyHash: other }, creator), true);
    assert.equal(isAllowed(policy, 'read', { keyHash: creator }, creator), false);
  });

  it('treats an empty list as nobody', () => {
    const policy = parseSession('name: p\nversion: "0.3"\naccess_policy: {update: []}\n').accessPolicy;
    assert.equal(isAllowed(policy, 'update', { keyHash: creator }, creator), false);
  });

  it('rejects malformed client key hashes', () => {
    const policy = parseSession('name: p\nversion: "0.3"\naccess_policy: {read: [ANY]}\n').accessPolicy;
    assert.equal(isAllowed(policy, 'update', { keyHash: '' }, ''), false);
  });

  it('matches a renewed certificate by its public key', async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    const first = await certificatePem(keys, 'owner');
    const renewed = await certificatePem(keys, 'owner renewed');
    assert.notEqual(first, renewed);
    const indented = first.trim().split('\n').map((l) => `      ${l}`).join('\n');
    const policy = parseSession(`name: p\nversion: "0.3"\naccess_policy:\n  read:\n    - |\n${indented}\n`).accessPolicy;
    const renewedHash = publicKeyHashOfCertificate(renewed);
    assert.deepEqual(policy.read, [{ kind: 'key', keyHash: renewedHash }]);
    assert.equal(isAllowed(policy, 'read', { keyHash: renewedHash }, creator), true);
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    assert.equal(renewedHash, createHash('sha256').update(spki).digest('hex'));
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    assert.equal(isAllowed(policy, 'read', { keyHash: createHash('sha256').update(stranger).digest('hex') }, creator), false);
  });

  it('lists parent namespaces outermost first', () => {
    assert.deepEqual(parentNamespaces('a/b/c'), ['a', 'a/b']);
    assert.deepEqual(parentNamespaces('shop'), []);
  });
});

describe('renderSessionForRead', () => {
  it('redacts values and keeps comments of the uploaded text', () => {
    const text = sample('written/simulated-dev.yaml');
    const out = renderSessionForRead(parseSession(text), text);
    assert.doesNotMatch(out, /hello, attested world/);
    assert.match(out, new RegExp(REDACTED_VALUE));
    assert.match(out, /# A development session/);
  });

  it('renders the normalised session without values', () => {
    const text = sample('public/spire-svid.yaml');
    const out = renderSessionForRead(parseSession(text));
    assert.doesNotMatch(out, /BEGIN PRIVATE KEY/);
    assert.doesNotMatch(out, /BEGIN CERTIFICATE/);
  });

  it('read-back text is rejected until values are restored', () => {
    const text = sample('written/simulated-dev.yaml');
    const out = renderSessionForRead(parseSession(text), text);
    assert.throws(() => parseSession(out), /redaction marker/);
  });

  it('round-trips sessions without explicit values', () => {
    for (const file of ['written/shop-database.yaml', 'written/shop-web.yaml', 'public/iexec-task.yaml', 'public/ethernity-securelock.yaml']) {
      const session = parseSession(sample(file));
      const again = parseSession(stringify(toSessionDocument(session, false)));
      assert.equal(sessionHash(again), sessionHash(session), file);
    }
  });
});
