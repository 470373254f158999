import { CasError } from '../../errors/cas-error.js';
import { decodeTcb, parseSnpReport } from '../snp/report.js';

export interface KdsClientOptions {
  /** AMD Key Distribution Service base URL. Default: https://kdsintf.amd.com. */
  baseUrl?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Fetches VCEK certificates and the ASK/ARK chain from AMD KDS (`/vcek/v1/{product}/...`). VCEKs are
 * cached by product, chip id and reported TCB, since a VCEK never changes for those. The ARK that KDS serves
 * is not trusted by itself: `verifySnpReport` checks it against pinned ARKs.
 */
export class KdsClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly vceks = new Map<string, Buffer>();
  private readonly chains = new Map<string, string>();

  constructor(private readonly options: KdsClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? 'https://kdsintf.amd.com').replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Returns the DER VCEK for the chip and reported TCB of `reportBytes`. `product` is e.g. `Milan`, `Genoa`, `Turin`. */
  async vcekForReport(reportBytes: Buffer, product: string): Promise<Buffer> {
    const report = parseSnpReport(reportBytes);
    if (report.chipId.every((byte) => byte === 0)) {
      throw new CasError('EVIDENCE_INVALID', 'the SEV-SNP report has a masked CHIP_ID, so its VCEK cannot be looked up');
    }
    const tcb = decodeTcb(report.reportedTcb, product);
    const query = new URLSearchParams();
    if (tcb.fmc !== undefined) query.set('fmcSPL', String(tcb.fmc));
    query.set('blSPL', String(tcb.bootloader));
    query.set('teeSPL', String(tcb.tee));
    query.set('snpSPL', String(tcb.snp));
    query.set('ucodeSPL', String(tcb.microcode));
    // Turin KDS takes the first 8 bytes of the chip id; Milan and Genoa take all 64.
    // NOTE: the Turin URL form (8-byte hwid, fmcSPL) is untested here; only Milan has a sample.
    const hwid = (product.startsWith('Turin') ? report.chipId.subarray(0, 8) : report.chipId).toString('hex');
    const url = `${this.baseUrl}/vcek/v1/${encodeURIComponent(product)}/${hwid}?${query.toString()}`;
    const cached = this.vceks.get(url);
    if (cached !== undefined) return cached;
    const der = Buffer.from(await (await this.request(url, 'VCEK')).arrayBuffer());
    this.vceks.set(url, der);
    return der;
  }

  /** Returns the PEM bundle of ASK then ARK for `product`. */
  async certChain(product: string): Promise<string> {
    const cached = this.chains.get(product);
    if (cached !== undefined) return cached;
    const pem = await (await this.request(`${this.baseUrl}/vcek/v1/${encodeURIComponent(product)}/cert_chain`, 'ASK and ARK')).text();
    this.chains.set(product, pem);
    return pem;
  }

  private async request(url: string, what: string): Promise<Response> {
    let response: Response;
    try {
      response = await this.fetchImpl(url, { signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (error) {
      throw new CasError('COLLATERAL_UNAVAILABLE', `fetching the ${what} from ${url} failed: ${(error as Error).message}`, { cause: error });
    }
    if (response.status !== 200) {
      throw new CasError('COLLATERAL_UNAVAILABLE', `fetching the ${what} from ${url} failed with HTTP ${response.status}`, { details: { url, status: response.status } });
    }
    return response;
  }
}
