import { CasError } from '../errors/cas-error.js';
import type { KdsClient } from './collateral/kds-client.js';
import { collateralKeyForParsedQuote, type CollateralKey } from './collateral/pcs-client.js';
import { evidenceKind } from './evidence-bytes.js';
import type { EvidenceResult } from './evidence-result.js';
import type { IntelCollateral } from './intel/collateral.js';
import { parseQuote } from './intel/quote.js';
import { verifyParsedIntelQuote } from './intel/verify-quote.js';
import { verifySnpReport } from './snp/verify-report.js';

export interface HardwareVerifierOptions {
  /** Where Intel collateral comes from, usually an IntelCollateralCache over PCS or a PCCS. */
  intelCollateral?: { get(key: CollateralKey): Promise<IntelCollateral> };
  /** Trusted Intel SGX Root CA; the embedded Intel certificate when absent. */
  intelRootCa?: string | Buffer;
  /** SEV-SNP: the KDS client, the product line (`Milan`, `Genoa`, `Turin`) and the pinned ARKs. */
  snp?: { kds: KdsClient; product: string; trustedArks: Array<string | Buffer> };
  now?: () => Date;
}

/**
 * Verifies an SGX or TDX quote or an SEV-SNP report, fetching the collateral it needs through the given
 * sources. This is the online counterpart of `cas quote verify`: the checks are those of
 * `verifyIntelQuote` and `verifySnpReport`, at the current time.
 */
export async function verifyHardwareEvidence(evidence: Buffer, options: HardwareVerifierOptions): Promise<EvidenceResult> {
  const at = (options.now ?? (() => new Date()))();
  if (evidenceKind(evidence) === 'intel') {
    if (options.intelCollateral === undefined) {
      throw new CasError('COLLATERAL_UNAVAILABLE', 'no Intel collateral source is configured; set a PCS or PCCS URL to verify SGX and TDX quotes');
    }
    // The quote is parsed once, from a private copy, because the caller's buffer could change while the
    // collateral is fetched.
    const quote = parseQuote(Buffer.from(evidence));
    const collateral = await options.intelCollateral.get(collateralKeyForParsedQuote(quote));
    return verifyParsedIntelQuote(quote, collateral, { at, ...(options.intelRootCa === undefined ? {} : { rootCa: options.intelRootCa }) });
  }

  if (options.snp === undefined) {
    throw new CasError('COLLATERAL_UNAVAILABLE', 'no AMD KDS source and pinned ARK are configured; SEV-SNP reports cannot be verified');
  }
  const { kds, product, trustedArks } = options.snp;
  const [vcek, chain] = await Promise.all([kds.vcekForReport(evidence, product), kds.certChain(product)]);
  // KDS serves the ASK first, then the ARK; only the ASK is taken from it, the ARK is pinned.
  return verifySnpReport(evidence, { vcek, ask: chain, trustedArks, at });
}
