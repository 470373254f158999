import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { loadOrCreateSimulationPlatform, platformIdFromPublicKeyPem, type Platform } from '../store/index.js';
import { createSelfSignedCertificate } from '../tls/certificates.js';
import { createRegistrationEvidence, verifyRegistrationEvidence, type RegistrationEvidence } from './registration-evidence.js';

const NONCE = '0123456789abcdef'.repeat(4);

function rejectsWith(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isCasError(error, 'EVIDENCE_INVALID'), String(error));
    assert.match(error.message, pattern);
    return true;
  };
}

describe('registration evidence', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-registration-test-'));
  let platform: Platform;
  let other: Platform;
  let casCertificatePem = '';
  let otherCertificatePem = '';

  before(async () => {
    platform = await loadOrCreateSimulationPlatform(join(root, 'platform'));
    other = await loadOrCreateSimulationPlatform(join(root, 'other'));
    casCertificatePem = (await createSelfSignedCertificate({ commonName: 'cas', usage: 'server', validDays: 1 })).certificatePem;
    otherCertificatePem = (await createSelfSignedCertificate({ commonName: 'other cas', usage: 'server', validDays: 1 })).certificatePem;
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it('verifies and names the platform', () => {
    const evidence = createRegistrationEvidence(platform, NONCE, casCertificatePem);
    const verified = verifyRegistrationEvidence(evidence, { nonce: NONCE, casCertificatePem });
    assert.equal(verified.platformId, platform.id);
    assert.equal(platformIdFromPublicKeyPem(verified.publicKeyPem), platform.id);
    assert.equal(verified.evidenceType, 'simulation');
    assert.match(verified.platformKeyHash, /^[0-9a-f]{64}$/);
    assert.ok(verified.platformKeyHash.startsWith(platform.id), 'the platform id is the first 16 bytes of the key hash');
  });

  it('rejects another nonce', () => {
    const evidence = createRegistrationEvidence(platform, NONCE, casCertificatePem);
    assert.throws(() => verifyRegistrationEvidence(evidence, { nonce: 'f'.repeat(64), casCertificatePem }), rejectsWith(/another nonce/));
  });

  it('rejects evidence for another CAS', () => {
    const evidence = createRegistrationEvidence(platform, NONCE, otherCertificatePem);
    assert.throws(() => verifyRegistrationEvidence(evidence, { nonce: NONCE, casCertificatePem }), rejectsWith(/another CAS certificate/));
  });

  it('rejects a swapped platform key', () => {
    const evidence: RegistrationEvidence = { ...createRegistrationEvidence(platform, NONCE, casCertificatePem), platformPublicKey: other.publicKeyPem };
    assert.throws(() => verifyRegistrationEvidence(evidence, { nonce: NONCE, casCertificatePem }), rejectsWith(new RegExp(`key of platform ${other.id}`)));
  });

  it('rejects an altered statement', () => {
    const evidence = createRegistrationEvidence(platform, NONCE, casCertificatePem);
    const statement = Buffer.from(evidence.statement, 'base64');
    statement[statement.length - 3] = statement[statement.length - 3]! ^ 0x01;
    const altered = { ...evidence, statement: statement.toString('base64') };
    assert.throws(() => verifyRegistrationEvidence(altered, { nonce: NONCE, casCertificatePem }), rejectsWith(/signature does not verify/));
  });

  it('rejects a platform signature made for another purpose', () => {
    // A signature over the same statement without the registration context, as another protocol would make it.
    const evidence = createRegistrationEvidence(platform, NONCE, casCertificatePem);
    const foreign = { ...evidence, signature: platform.sign(Buffer.from(evidence.statement, 'base64')).toString('base64') };
    assert.throws(() => verifyRegistrationEvidence(foreign, { nonce: NONCE, casCertificatePem }), rejectsWith(/signature does not verify/));
  });

  it('rejects malformed evidence', () => {
    assert.throws(() => verifyRegistrationEvidence({ type: 'sgx' }, { nonce: NONCE, casCertificatePem }), rejectsWith(/malformed/));
    const evidence = createRegistrationEvidence(platform, NONCE, casCertificatePem);
    assert.throws(() => verifyRegistrationEvidence({ ...evidence, extra: 1 }, { nonce: NONCE, casCertificatePem }), rejectsWith(/malformed/));
    assert.throws(() => verifyRegistrationEvidence({ ...evidence, platformPublicKey: 'not a key' }, { nonce: NONCE, casCertificatePem }), rejectsWith(/not a P-256 public key/));
  });
});
