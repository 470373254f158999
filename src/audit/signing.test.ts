import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { createSelfSignedCertificate } from '../tls/certificates.js';
import { checkAuditChain, createAuditKeyPair, issueAuditCertificate, signEntryBytes, verifyEntryBytes } from './signing.js';

async function casIdentity() {
  const cas = await createSelfSignedCertificate({ commonName: 'cas-signing-test', usage: 'server', validDays: 10 });
  return { casKey: createPrivateKey(cas.privateKeyPem), casCertPem: cas.certificatePem };
}

describe('issueAuditCertificate', () => {
  test('certificate links the audit key to the CAS', async () => {
    const { casKey, casCertPem } = await casIdentity();
    const audit = createAuditKeyPair();
    const pem = await issueAuditCertificate({ casKey, casCertPem, auditPublicKey: audit.publicKey });

    const certificate = new X509Certificate(pem);
    const cas = new X509Certificate(casCertPem);
    assert.equal(certificate.issuer, cas.subject);
    assert.equal(certificate.verify(cas.publicKey), true);
    assert.equal(certificate.ca, false);
    assert.equal(certificate.subject, 'CN=CAS audit log');
    assert.equal(certificate.publicKey.export({ type: 'spki', format: 'der' }).equals(audit.publicKey.export({ type: 'spki', format: 'der' })), true);
    assert.equal(new Date(certificate.validTo).getTime(), new Date(cas.validTo).getTime());

    const check = checkAuditChain([pem, casCertPem], new Date());
    assert.equal(check.ok, true);
  });

  test('CAS key of another certificate is rejected', async () => {
    const first = await casIdentity();
    const second = await casIdentity();
    await assert.rejects(
      issueAuditCertificate({ casKey: second.casKey, casCertPem: first.casCertPem, auditPublicKey: createAuditKeyPair().publicKey }),
      (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'),
    );
  });

  test('audit key on another curve is rejected', async () => {
    const { casKey, casCertPem } = await casIdentity();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    await assert.rejects(issueAuditCertificate({ casKey, casCertPem, auditPublicKey: p384.publicKey }), (error: unknown) => isCasError(error, 'INVALID_ARGUMENT'));
  });
});

describe('checkAuditChain', () => {
  test('chain signed by another CAS is rejected', async () => {
    const first = await casIdentity();
    const second = await casIdentity();
    const pem = await issueAuditCertificate({ ...first, auditPublicKey: createAuditKeyPair().publicKey });
    const check = checkAuditChain([pem, second.casCertPem], new Date());
    assert.equal(check.ok, false);
  });

  test('time outside the validity is rejected', async () => {
    const { casKey, casCertPem } = await casIdentity();
    const pem = await issueAuditCertificate({ casKey, casCertPem, auditPublicKey: createAuditKeyPair().publicKey });
    assert.equal(checkAuditChain([pem, casCertPem], new Date(Date.now() - 86_400_000)).ok, false);
    assert.equal(checkAuditChain([pem, casCertPem], new Date(Date.now() + 30 * 86_400_000)).ok, false);
  });

  test('self-signed CAS certificate alone is not an audit chain', async () => {
    const { casCertPem } = await casIdentity();
    assert.equal(checkAuditChain([casCertPem], new Date()).ok, false);
  });
});

describe('signEntryBytes', () => {
  test('signature verifies only for the same bytes', () => {
    const { privateKey, publicKey } = createAuditKeyPair();
    const signature = signEntryBytes(privateKey, Buffer.from('entry'));
    assert.match(signature, /^[0-9a-f]{128}$/);
    assert.equal(verifyEntryBytes(publicKey, Buffer.from('entry'), signature), true);
    assert.equal(verifyEntryBytes(publicKey, Buffer.from('entrz'), signature), false);
  });
});
