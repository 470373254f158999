import crypto, { type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { collateralKeyForQuote, IntelCollateralCache, parseCollateralFile, verifyIntelQuote, type CollateralKey, type IntelCollateral } from '../../src/attestation/index.js';
import { sharedDir } from '../../src/testing/paths.js';
import { fmt, isP256, measureEcdsaP256, type BenchOptions, type FigureResult } from '../harness.js';

interface SampleCase {
  id: string;
  quote: string;
  collateral: string;
  verifyAt: number;
  encoding?: string;
  expect: { ok: boolean; tcbStatus?: string };
}

const TARGET_RATIO = 0.7;

/**
 * Figure 2: DCAP quote verification with a warm collateral cache. Each quote goes through the path a
 * configuration request takes: collateral key from the PCK certificate, IntelCollateralCache lookup,
 * verifyIntelQuote. The limit is node:crypto's single-thread ECDSA P-256 verify rate divided by the number of
 * verifications one quote needs, counted by wrapping crypto.verify during one verification.
 */
export async function quoteVerificationFigure(options: BenchOptions): Promise<FigureResult> {
  const samples = join(sharedDir(), 'attestation-samples');
  const manifest = JSON.parse(readFileSync(join(samples, 'manifest.json'), 'utf8')) as { cases: SampleCase[] };
  const cases = manifest.cases.filter((c) => c.expect.ok && c.encoding === undefined);
  const durationMs = options.quick ? 1500 : 8000;

  options.progress('figure 2: measuring ECDSA P-256 verify rate');
  const ecdsa = measureEcdsaP256(options.quick ? 500 : 2000);

  const result: FigureResult = {
    number: 2,
    title: 'DCAP quote verification with a warm collateral cache',
    values: [],
    limit: [{ label: 'ECDSA P-256 verifications/s (node:crypto, one thread)', value: fmt(ecdsa.verifyPerSecond) }],
    checks: [],
    method: [
      `Quotes: the real samples ${cases.map((c) => `\`${c.quote}\``).join(' and ')} with their collateral, verified with the clock fixed at the manifest's verifyAt.`,
      'Per quote: collateralKeyForQuote, IntelCollateralCache.get (warm: one fetch before the run, from the sample collateral file) and verifyIntelQuote, sequentially on one thread.',
      'Verifications per quote are counted by wrapping node:crypto `verify` (module.syncBuiltinESMExports) during one verification; all of them are ECDSA P-256.',
      `Each quote is verified for ${durationMs / 1000} s after a warm-up.`,
    ],
    notes: [],
  };

  for (const sample of cases) {
    options.progress(`figure 2: verifying ${sample.id} for ${durationMs / 1000} s`);
    const quote = readFileSync(join(samples, sample.quote));
    const collateral = parseCollateralFile(readFileSync(join(samples, sample.collateral), 'utf8'));
    const at = new Date(sample.verifyAt * 1000);
    let fetches = 0;
    const cache = new IntelCollateralCache(
      {
        fetchCollateral: async (_key: CollateralKey): Promise<IntelCollateral> => {
          fetches += 1;
          return collateral;
        },
      },
      { now: () => at },
    );
    const verifyOne = async (): Promise<string> => {
      const entry = await cache.get(collateralKeyForQuote(quote));
      return verifyIntelQuote(quote, entry, { at }).tcbStatus;
    };

    const status = await verifyOne();
    if (status !== sample.expect.tcbStatus) throw new Error(`${sample.id}: TCB status ${status}, expected ${sample.expect.tcbStatus}`);
    const counted = countVerifications(() => verifyOne());
    const perQuote = await counted;

    let quotes = 0;
    for (let i = 0; i < 20; i++) await verifyOne();
    const started = performance.now();
    let elapsed = 0;
    while (elapsed < durationMs) {
      await verifyOne();
      quotes += 1;
      elapsed = performance.now() - started;
    }
    if (fetches !== 1) throw new Error(`${sample.id}: the collateral cache fetched ${fetches} times; a warm cache fetches once`);

    const rate = (quotes * 1000) / elapsed;
    const limit = ecdsa.verifyPerSecond / perQuote.p256;
    const ratio = rate / limit;
    result.values.push({ label: `${sample.id}: quotes/s`, value: fmt(rate) }, { label: `${sample.id}: mean time per quote`, value: `${fmt(elapsed / quotes, 2)} ms` });
    result.limit!.push(
      { label: `${sample.id}: ECDSA P-256 verifications per quote (counted)`, value: String(perQuote.p256) },
      { label: `${sample.id}: limit = verify rate ÷ verifications per quote`, value: `${fmt(limit)} quotes/s` },
    );
    if (perQuote.other > 0) result.notes.push(`${sample.id}: ${perQuote.other} verifications per quote used another algorithm and are not in the limit.`);
    result.checks.push({ label: `${sample.id}: quotes/s ÷ limit`, value: fmt(ratio, 2), target: `≥ ${TARGET_RATIO}`, met: ratio >= TARGET_RATIO });
  }
  return result;
}

/** Runs `fn` once with node:crypto `verify` wrapped, and returns how many P-256 and other verifications it made. */
async function countVerifications(fn: () => Promise<unknown>): Promise<{ p256: number; other: number }> {
  const original = crypto.verify;
  const counts = { p256: 0, other: 0 };
  const counting = ((...args: Parameters<typeof crypto.verify>) => {
    const key = args[2];
    const keyObject = (typeof key === 'object' && key !== null && 'key' in key ? key.key : key) as KeyObject | undefined;
    if (keyObject !== undefined && typeof keyObject === 'object' && 'asymmetricKeyType' in keyObject && isP256(keyObject)) counts.p256 += 1;
    else counts.other += 1;
    return original(...args);
  }) as typeof crypto.verify;
  crypto.verify = counting;
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    crypto.verify = original;
    syncBuiltinESMExports();
  }
  if (counts.p256 === 0) throw new Error('no ECDSA P-256 verification was counted; the verifier no longer calls node:crypto verify');
  return counts;
}
