import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { isCasError, type ErrorCode } from '../../errors/cas-error.js';
import type { IntelCollateral } from './collateral.js';
import { cachedPckChainCount, MAX_CACHED_CHAIN_CHARS, parsePckChain, pckChainFingerprint } from './pck-chain.js';
import { parseQuote } from './quote.js';
import { FIXTURE_TIME, buildCollateral, buildSgxQuote, createCrl, createPki, type Pki } from './test-support.js';
import { attestationPublicKey, verifyIntelQuote } from './verify-quote.js';

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const PEM_END = '-----END CERTIFICATE-----';

function expectCode(fn: () => unknown, code: ErrorCode, pattern?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isCasError(error), `expected a CasError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    if (pattern !== undefined) assert.match(error.message, pattern);
    return true;
  });
}

/**
 * Returns positions of base64 characters in the leaf certificate's signature (the last 40 characters of
 * the first PEM block, except the final one, whose low bits may be padding) that the fingerprint does
 * not sample. Changing one of them changes only signature bytes, so the chain still parses.
 */
function unsampledSignaturePositions(pem: string): number[] {
  const step = Math.max(1, Math.floor(pem.length / 32));
  const positions: number[] = [];
  let i = pem.indexOf(PEM_END) - 1;
  while (positions.length < 40 && i > 0) {
    const char = pem[i]!;
    if (BASE64.includes(char) && (i - (step >> 1)) % step !== 0) positions.push(i);
    i--;
  }
  return positions.slice(1);
}

function withChar(text: string, index: number, char: string): string {
  return text.slice(0, index) + char + text.slice(index + 1);
}

function otherChar(char: string): string {
  return char === 'A' ? 'B' : 'A';
}

describe('PCK chain cache', () => {
  let pki: Pki;
  let rootPem: string;
  let quote: Buffer;
  let pem: string;
  let collateral: IntelCollateral;
  const at = FIXTURE_TIME;

  before(async () => {
    pki = await createPki();
    rootPem = pki.root.cert.toString('pem');
    quote = await buildSgxQuote(pki);
    pem = parseQuote(quote).pckChainPem;
    collateral = await buildCollateral(pki);
  });

  it('returns the cached parse for equal text', () => {
    const first = parsePckChain(pem);
    const second = parsePckChain(Buffer.from(pem).toString('utf8'));
    assert.equal(second, first);
    assert.equal(first.length, 3);
  });

  it('misses for a changed byte with the same fingerprint', () => {
    const original = parsePckChain(pem);
    const index = unsampledSignaturePositions(pem)[0]!;
    const changed = withChar(pem, index, otherChar(pem[index]!));
    assert.equal(pckChainFingerprint(changed), pckChainFingerprint(pem));

    const parsed = parsePckChain(changed);
    assert.notEqual(parsed, original);
    assert.notDeepEqual(parsed[0]!.signature, original[0]!.signature);
    assert.deepEqual(parsePckChain(pem)[0]!.signature, original[0]!.signature);
  });

  it('changed PCK signature fails after a cached verification', () => {
    assert.equal(verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    const index = unsampledSignaturePositions(pem)[0]!;
    const offset = quote.indexOf('-----BEGIN CERTIFICATE-----') + index;
    const tampered = Buffer.from(quote);
    tampered[offset] = otherChar(pem[index]!).charCodeAt(0);
    assert.equal(pckChainFingerprint(parseQuote(tampered).pckChainPem), pckChainFingerprint(pem));
    expectCode(() => verifyIntelQuote(tampered, collateral, { at, rootCa: rootPem }), 'CERT_CHAIN_INVALID', /signature of "Intel SGX PCK Certificate" does not verify/);
  });

  it('expired PCK certificate fails with a cached parse', () => {
    assert.equal(verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    const cached = parsePckChain(pem);
    expectCode(() => verifyIntelQuote(quote, collateral, { at: new Date('2032-06-01T00:00:00Z'), rootCa: rootPem }), 'CERT_CHAIN_INVALID', /"Intel SGX PCK Certificate" is valid from .* to 2032-01-01/);
    expectCode(() => verifyIntelQuote(quote, collateral, { at: new Date('2024-12-01T00:00:00Z'), rootCa: rootPem }), 'CERT_CHAIN_INVALID', /"Intel SGX PCK Certificate" is valid from 2025-01-01/);
    assert.equal(parsePckChain(pem), cached);
  });

  it('revoked PCK fails with a cached parse', async () => {
    assert.equal(verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    const pckCrl = await createCrl(pki.pckCa, [pki.pck.cert.serialNumber]);
    expectCode(() => verifyIntelQuote(quote, { ...collateral, pckCrl }, { at, rootCa: rootPem }), 'CERT_REVOKED', /revoked by PCK CRL/);
  });

  it('does not cache an oversized chain', () => {
    // Repeated certificates parse, so a client can send a chain of any length up to the body limit.
    const long = `${pem}\n`.repeat(Math.ceil((MAX_CACHED_CHAIN_CHARS + 1) / (pem.length + 1)));
    assert.ok(long.length > MAX_CACHED_CHAIN_CHARS);
    const count = cachedPckChainCount();
    const first = parsePckChain(long);
    assert.equal(first.length % 3, 0);
    assert.ok(first.length > 3);
    assert.notEqual(parsePckChain(long), first);
    assert.equal(cachedPckChainCount(), count);
  });

  it('keeps at most 1024 chains', () => {
    // Trailing newlines keep the chain valid and change the length, and so the fingerprint.
    const texts = Array.from({ length: 1100 }, (_, k) => pem + '\n'.repeat(k + 1));
    const first = parsePckChain(texts[0]!);
    for (const text of texts.slice(1)) parsePckChain(text);
    assert.equal(cachedPckChainCount(), 1024);

    const last = texts[texts.length - 1]!;
    assert.equal(parsePckChain(last), parsePckChain(last));
    assert.notEqual(parsePckChain(texts[0]!), first);
  });
});

describe('attestation key cache', () => {
  let pki: Pki;
  let rootPem: string;
  let quote: Buffer;
  let collateral: IntelCollateral;
  const at = FIXTURE_TIME;

  before(async () => {
    pki = await createPki();
    rootPem = pki.root.cert.toString('pem');
    quote = await buildSgxQuote(pki);
    collateral = await buildCollateral(pki);
  });

  it('returns one key object per key bytes', () => {
    const raw = parseQuote(quote).attestationKey;
    const key = attestationPublicKey(Buffer.from(raw));
    assert.equal(attestationPublicKey(Buffer.from(raw)), key);
    const exported = key.export({ format: 'der', type: 'spki' });
    assert.deepEqual(exported.subarray(exported.length - 64), raw);
  });

  it('misses for different key bytes', async () => {
    const raw = parseQuote(quote).attestationKey;
    const otherRaw = parseQuote(await buildSgxQuote(pki)).attestationKey;
    const other = attestationPublicKey(otherRaw);
    assert.notEqual(other, attestationPublicKey(raw));
    const exported = other.export({ format: 'der', type: 'spki' });
    assert.deepEqual(exported.subarray(exported.length - 64), otherRaw);
  });

  it('invalid point is rejected on every call', () => {
    const notOnCurve = Buffer.alloc(64, 0x01);
    expectCode(() => attestationPublicKey(notOnCurve), 'EVIDENCE_INVALID', /not a valid P-256 point/);
    expectCode(() => attestationPublicKey(notOnCurve), 'EVIDENCE_INVALID', /not a valid P-256 point/);
  });

  it('quote signature is checked with a cached key', () => {
    assert.equal(verifyIntelQuote(quote, collateral, { at, rootCa: rootPem }).tcbStatus, 'UpToDate');
    const tampered = Buffer.from(quote);
    tampered[48 + 64] = tampered[48 + 64]! ^ 0x01;
    expectCode(() => verifyIntelQuote(tampered, collateral, { at, rootCa: rootPem }), 'EVIDENCE_INVALID', /quote signature does not verify/);
  });
});
