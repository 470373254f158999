import { CasError } from '../../errors/cas-error.js';
import { crlBytes, rawJsonMember, type IntelCollateral } from '../intel/collateral.js';
import { parsePckChain } from '../intel/pck-chain.js';
import { parsePckExtensions } from '../intel/pck-extensions.js';
import { parseQuote, type DcapQuote } from '../intel/quote.js';

/** Collateral lookup key of a quote: TCB Info for its FMSPC, and the CRL of the CA that issued its PCK. */
export interface CollateralKey {
  teeType: 'sgx' | 'tdx';
  /** FMSPC, 12 upper-case hex characters. */
  fmspc: string;
  ca: 'processor' | 'platform';
}

/** Reads the collateral key from the PCK certificate in a quote. */
export function collateralKeyForQuote(quoteBytes: Buffer): CollateralKey {
  return collateralKeyForParsedQuote(parseQuote(quoteBytes));
}

/** Reads the collateral key from the PCK certificate in a parsed quote. */
export function collateralKeyForParsedQuote(quote: DcapQuote): CollateralKey {
  // Only the leaf is read here, and verifyIntelQuote checks the whole chain. The parse is cached by PEM
  // text, so verifyIntelQuote reuses it.
  const [pck] = parsePckChain(quote.pckChainPem);
  const { fmspc } = parsePckExtensions(pck!);
  let ca: CollateralKey['ca'];
  if (pck!.issuerCn.includes('Processor')) ca = 'processor';
  else if (pck!.issuerCn.includes('Platform')) ca = 'platform';
  else throw new CasError('CERT_CHAIN_INVALID', `PCK certificate issuer "${pck!.issuerCn}" is neither the PCK Processor CA nor the PCK Platform CA`);
  return { teeType: quote.body.kind === 'sgx' ? 'sgx' : 'tdx', fmspc: fmspc.toString('hex').toUpperCase(), ca };
}

export interface IntelCollateralSource {
  fetchCollateral(key: CollateralKey): Promise<IntelCollateral>;
}

export interface PcsClientOptions {
  /** Intel PCS (https://api.trustedservices.intel.com) or a PCCS base URL; paths `/sgx|tdx/certification/v4/...` are appended. */
  baseUrl: string;
  /** Intel DCAP API key, sent as `Ocp-Apim-Subscription-Key` when set. */
  apiKey?: string;
  /** Per-request timeout in milliseconds. */
  timeoutMs?: number;
  /**
   * URL of the Intel SGX Root CA CRL. PCCS serves it at `<base>/sgx/certification/v4/rootcacrl`, the default;
   * Intel PCS itself does not, so set this when `baseUrl` is PCS.
   */
  rootCaCrlUrl?: string;
  fetch?: typeof fetch;
}

/**
 * Fetches Intel collateral from the PCS v4 API or a PCCS: TCB Info, QE identity, PCK CRL and root CA CRL,
 * with the issuer chains from the response headers. Signed JSON items are cut out of the response text
 * unchanged, because their signatures cover the bytes as served.
 */
export class PcsClient implements IntelCollateralSource {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: PcsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
  }

  async fetchCollateral(key: CollateralKey): Promise<IntelCollateral> {
    const [tcb, qe, pckCrl, rootCaCrl] = await Promise.all([
      this.fetchSigned(`${this.baseUrl}/${key.teeType}/certification/v4/tcb?fmspc=${encodeURIComponent(key.fmspc)}`, 'tcbInfo', ['TCB-Info-Issuer-Chain', 'SGX-TCB-Info-Issuer-Chain'], 'TCB Info'),
      this.fetchSigned(`${this.baseUrl}/${key.teeType}/certification/v4/qe/identity`, 'enclaveIdentity', ['SGX-Enclave-Identity-Issuer-Chain'], 'QE identity'),
      this.fetchCrl(`${this.baseUrl}/sgx/certification/v4/pckcrl?ca=${key.ca}&encoding=der`, 'PCK CRL', 'SGX-PCK-CRL-Issuer-Chain'),
      this.fetchCrl(this.options.rootCaCrlUrl ?? `${this.baseUrl}/sgx/certification/v4/rootcacrl`, 'root CA CRL'),
    ]);
    return {
      pckCrlIssuerChain: pckCrl.issuerChain!,
      rootCaCrl: rootCaCrl.crl,
      pckCrl: pckCrl.crl,
      tcbInfoIssuerChain: tcb.issuerChain,
      tcbInfo: tcb.text,
      tcbInfoSignature: tcb.signature,
      qeIdentityIssuerChain: qe.issuerChain,
      qeIdentity: qe.text,
      qeIdentitySignature: qe.signature,
    };
  }

  private async request(url: string, item: string): Promise<Response> {
    // The API key goes only to the origin of the base URL, and a request that carries it follows no
    // redirect, because fetch keeps custom headers on a redirect to another origin and would send the key there.
    const headers: Record<string, string> = {};
    const sendKey = this.options.apiKey !== undefined && new URL(url).origin === new URL(this.baseUrl).origin;
    if (sendKey) headers['Ocp-Apim-Subscription-Key'] = this.options.apiKey!;
    let response: Response;
    try {
      response = await this.fetchImpl(url, { headers, redirect: sendKey ? 'error' : 'follow', signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (error) {
      throw new CasError('COLLATERAL_UNAVAILABLE', `fetching ${item} from ${url} failed: ${(error as Error).message}`, { cause: error });
    }
    if (response.status !== 200) {
      throw new CasError('COLLATERAL_UNAVAILABLE', `fetching ${item} from ${url} failed with HTTP ${response.status}`, { details: { url, status: response.status } });
    }
    return response;
  }

  private async fetchSigned(url: string, member: string, chainHeaders: string[], item: string): Promise<{ text: string; signature: Buffer; issuerChain: string }> {
    const response = await this.request(url, item);
    const body = await response.text();
    const text = rawJsonMember(body, member);
    const signatureJson = rawJsonMember(body, 'signature');
    if (text === undefined || signatureJson === undefined) {
      throw new CasError('COLLATERAL_INVALID', `${item} response from ${url} is missing "${member}" or "signature"`);
    }
    const signatureHex = JSON.parse(signatureJson) as unknown;
    if (typeof signatureHex !== 'string' || !/^[0-9a-fA-F]{128}$/.test(signatureHex)) {
      throw new CasError('COLLATERAL_INVALID', `${item} response from ${url}: "signature" is not 64 bytes of hex`);
    }
    return { text, signature: Buffer.from(signatureHex, 'hex'), issuerChain: issuerChain(response, chainHeaders, item, url) };
  }

  private async fetchCrl(url: string, item: string, chainHeader?: string): Promise<{ crl: Buffer; issuerChain?: string }> {
    const response = await this.request(url, item);
    const crl = crlBytes(Buffer.from(await response.arrayBuffer()), item);
    return chainHeader === undefined ? { crl } : { crl, issuerChain: issuerChain(response, [chainHeader], item, url) };
  }
}

function issuerChain(response: Response, names: string[], item: string, url: string): string {
  for (const name of names) {
    const value = response.headers.get(name);
    if (value !== null) return decodeURIComponent(value);
  }
  throw new CasError('COLLATERAL_INVALID', `${item} response from ${url} is missing the ${names[0]} header`);
}
