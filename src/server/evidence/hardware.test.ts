import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { collateralKeyForQuote, parseCollateralFile, reportDataFor, verifyIntelQuote, verifySnpReport, type IntelCollateral } from '../../attestation/index.js';
import { startPcs, stop, type Recorded } from '../../attestation/collateral/test-support.js';
import type { CasClient } from '../../client/cas-client.js';
import { fetchConfiguration } from '../../client/fetch-configuration.js';
import { FILE_NAMES } from '../../config/defaults.js';
import { loadServerSettings, type ServerSettingsInput } from '../../config/settings.js';
import { CasError } from '../../errors/cas-error.js';
import { createLogger } from '../../logging/logger.js';
import { openPlatform } from '../../store/index.js';
import { sharedDir } from '../../testing/paths.js';
import { spkiOfCertificate } from '../../tls/certificates.js';
import { createCasServer, type CasServer } from '../cas-server.js';
import { tempDir } from '../testing/cas-process.js';
import { clientFor, newIdentity, type TestIdentity } from '../testing/in-process.js';
import { hardwareEvidence } from './hardware.js';
import { createSimulatedEvidence } from './simulation.js';

// End to end: a CAS server built by the `cas serve` factory, over real HTTPS, verifies recorded Intel
// quotes with collateral from a loopback PCS-like server and releases configuration by the session policy.

const samples = join(sharedDir(), 'attestation-samples');
const manifest = JSON.parse(readFileSync(join(samples, 'manifest.json'), 'utf8')) as { cases: Array<{ id: string; quote: string; collateral: string; verifyAt: number }> };

interface Sample {
  quote: Buffer;
  collateral: IntelCollateral;
  at: Date;
  reportData: Buffer;
  measurements: Record<string, unknown>;
}

function loadSample(id: string): Sample {
  const entry = manifest.cases.find((candidate) => candidate.id === id)!;
  const quote = readFileSync(join(samples, entry.quote));
  const collateral = parseCollateralFile(readFileSync(join(samples, entry.collateral), 'utf8'));
  const at = new Date(entry.verifyAt * 1000);
  const result = verifyIntelQuote(quote, collateral, { at });
  return { quote, collateral, at, reportData: result.reportData, measurements: { ...result.measurements } };
}

/** A CAS with hardware verification against a loopback PCS, a pinned nonce and the binding seam. */
interface HardwareCas {
  server: CasServer;
  url: URL;
  dataDir: string;
  platformDir: string;
  owner: TestIdentity;
  ownerClient: CasClient;
  pcs: { server: Server; baseUrl: string; requests: Recorded[] };
  logLines: () => Array<Record<string, unknown>>;
  auditEntries: () => Array<{ event: string; details: Record<string, unknown> }>;
  /** While true, the nonce generator returns PINNED_NONCE; otherwise random bytes. */
  pin: { value: boolean };
  close(): Promise<void>;
}

const PINNED_NONCE = Buffer.alloc(32, 0x5a);
const DCAP_API_KEY = 'test-dcap-key-0b7e2f94c1d35a68';

/** Starts a CAS in fresh directories, or again on the directories of an earlier one (`reuse`). */
async function startHardwareCas(sample: Sample, reuse?: { dataDir: string; platformDir: string }): Promise<HardwareCas> {
  const pcs = await startPcs(sample.collateral, collateralKeyForQuote(sample.quote));
  try {
    return await startWithPcs(sample, pcs, reuse);
  } catch (error) {
    await stop(pcs.server);
    throw error;
  }
}

async function startWithPcs(
  sample: Pick<Sample, 'reportData' | 'at'>,
  pcs: HardwareCas['pcs'],
  reuse: { dataDir: string; platformDir: string } | undefined,
  extra: ServerSettingsInput = {},
): Promise<HardwareCas> {
  const root = tempDir('hardware');
  const dir = reuse?.dataDir ?? join(root, 'data');
  const platformDir = reuse?.platformDir ?? join(root, 'platform');
  const dcapApiKeyFile = join(root, 'dcap-api-key');
  writeFileSync(dcapApiKeyFile, `${DCAP_API_KEY}\n`, { mode: 0o600 });
  const settings = loadServerSettings({ listen: '127.0.0.1:0', dataDir: dir, platformDir, pccsUrl: pcs.baseUrl, dcapApiKeyFile, lease: 'none', logLevel: 'info', ...extra });
  const logged: string[] = [];
  const destination = new PassThrough();
  destination.on('data', (chunk: Buffer) => logged.push(...chunk.toString('utf8').split('\n').filter((line) => line !== '')));
  const pin = { value: true };
  const server = await createCasServer({
    settings,
    logger: createLogger({ level: 'info', destination }),
    nonceGenerator: () => (pin.value ? PINNED_NONCE : randomBytes(32)),
    // The recorded quote's report data stands for the pinned nonce; every other nonce needs the real binding.
    reportDataBinding: (nonce, publicKeyDer) => (nonce.equals(PINNED_NONCE) ? sample.reportData : reportDataFor(nonce, publicKeyDer)),
    attestationClock: () => sample.at,
  });
  const { url } = await server.listen();
  const owner = await newIdentity();
  const ownerClient = clientFor(new URL(url), owner);
  if (reuse === undefined) await ownerClient.provision(readFileSync(join(dir, FILE_NAMES.provisioningToken), 'utf8').trim());
  return {
    server,
    url: new URL(url),
    dataDir: dir,
    platformDir,
    owner,
    ownerClient,
    pcs,
    pin,
    logLines: () => logged.map((line) => JSON.parse(line) as Record<string, unknown>),
    auditEntries: () =>
      readFileSync(settings.auditLog, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { event: string; details: Record<string, unknown> }),
    async close() {
      await server.close('shutdown');
      await stop(pcs.server);
    },
  };
}

async function rejection(action: () => Promise<unknown>): Promise<CasError> {
  try {
    await action();
  } catch (error) {
    assert.ok(error instanceof CasError, `expected a CasError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

const SGX_TOLERANCES = `security:
  attestation:
    tolerate: [insecure-configuration, software-hardening-needed]
    ignore_advisories: [INTEL-SA-00289, INTEL-SA-00615]
`;

function sgxSession(name: string, attestation: string, security = SGX_TOLERANCES): string {
  return `name: ${name}
version: "0.3"
services:
  - name: app
    command: /bin/app
    environment:
      PASSWORD: $$SCONE::password$$
    attestation:
${attestation}
secrets:
  - name: password
    kind: ascii
    size: 16
${security}`;
}

describe('hardware evidence through the CAS API (recorded SGX quote)', () => {
  const sgx = loadSample('sgx-v3-processor-ca');
  const mrenclave = sgx.measurements['mrenclave'] as string;
  const mrsigner = sgx.measurements['mrsigner'] as string;
  const otherMrenclave = 'ab'.repeat(32);
  let cas: HardwareCas;

  before(async () => {
    cas = await startHardwareCas(sgx);
    await cas.ownerClient.createSession(sgxSession('by-mrenclave', `      - mrenclave: ["${mrenclave}"]`));
    await cas.ownerClient.createSession(sgxSession('by-signer', `      - signer: {mrsigner: "${mrsigner}", isvprodid: 0, isvsvn_min: 0}`));
    await cas.ownerClient.createSession(sgxSession('other-enclave', `      - mrenclave: ["${otherMrenclave}"]`));
    await cas.ownerClient.createSession(sgxSession('strict-tcb', `      - mrenclave: ["${mrenclave}"]`, ''));
    await cas.ownerClient.createSession('name: dev-none\nversion: "0.3"\nservices:\n  - name: app\n    command: /bin/app\nsecurity:\n  attestation:\n    mode: none\n');
  });

  after(async () => {
    await cas?.close();
  });

  /** Requests a nonce over a fresh service key and sends `evidence` (the recorded quote by default) for it. */
  async function attest(session: string, evidence?: (nonce: string, spki: Buffer) => Record<string, unknown>) {
    const key = await newIdentity();
    const client = cas.ownerClient.withClientKey(key.privateKeyPem, key.certificatePem);
    const { nonce } = await client.requestNonce();
    const body = evidence?.(nonce, spkiOfCertificate(key.certificatePem)) ?? { ...hardwareEvidence('sgx', sgx.quote) };
    const request = { session, service: 'app', nonce, evidence: body, hostArguments: [], hostEnvironment: {} };
    return { request, send: () => client.fetchConfiguration(request) };
  }

  it('releases the configuration when MRENCLAVE matches, and audits the measurements', async () => {
    const configuration = await (await attest('by-mrenclave')).send();
    assert.match(configuration.environment['PASSWORD'] ?? '', /^.{16}$/);
    const attested = cas.auditEntries().filter((entry) => entry.event === 'service.attested').at(-1);
    assert.deepEqual(attested?.details, {
      evidenceType: 'sgx-dcap',
      measurements: sgx.measurements,
      tcbStatus: 'ConfigurationAndSWHardeningNeeded',
      advisories: ['INTEL-SA-00289', 'INTEL-SA-00615'],
    });
    // Collateral came from the PCS-like server, with the FMSPC of the quote's PCK certificate.
    assert.ok(cas.pcs.requests.some((request) => request.url.startsWith(`/sgx/certification/v4/tcb?fmspc=${collateralKeyForQuote(sgx.quote).fmspc}`)));
    assert.equal(readdirSync(join(cas.dataDir, 'collateral')).filter((name) => name.endsWith('.json')).length, 1);
    // The DCAP API key from --dcap-api-key-file went to the PCS in its header, and into no log line.
    assert.ok(cas.pcs.requests.length > 0 && cas.pcs.requests.every((request) => request.headers['ocp-apim-subscription-key'] === DCAP_API_KEY));
    const lines = cas.logLines();
    assert.ok(lines.some((line) => line['msg'] === 'hardware evidence verification configured' && line['dcapApiKeyConfigured'] === true));
    assert.ok(!lines.some((line) => JSON.stringify(line).includes(DCAP_API_KEY)));
  });

  it('releases the configuration to a signer variant', async () => {
    const configuration = await (await attest('by-signer')).send();
    assert.equal(configuration.session, 'by-signer');
  });

  it('refuses another MRENCLAVE with its mismatch', async () => {
    const error = await rejection((await attest('other-enclave')).send);
    assert.equal(error.code, 'ATTESTATION_REJECTED');
    assert.equal(error.details?.['status'], 403);
    const mismatches = error.details?.['mismatches'];
    assert.deepEqual(mismatches, [{ variant: 0, field: 'mrenclave', expected: otherMrenclave, actual: mrenclave }]);
    assert.match(error.message, new RegExp(`mrenclave is ${mrenclave}, expected ${otherMrenclave}`));

    const logged = cas.logLines().find((line) => line['msg'] === 'configuration request rejected' && line['session'] === 'other-enclave');
    assert.deepEqual(logged?.['mismatches'], mismatches);
    const rejected = cas.auditEntries().filter((entry) => entry.event === 'service.rejected').at(-1);
    assert.equal(rejected?.details['reason'], 'ATTESTATION_REJECTED');
    assert.equal(rejected?.details['evidenceType'], 'sgx-dcap');
    assert.equal((rejected?.details['measurements'] as Record<string, unknown>)['mrenclave'], mrenclave);
  });

  it('refuses a TCB status that the session does not tolerate', async () => {
    const error = await rejection((await attest('strict-tcb')).send);
    assert.equal(error.code, 'ATTESTATION_REJECTED');
    const mismatches = error.details?.['mismatches'] as Array<{ field: string; actual: string }>;
    assert.deepEqual(
      mismatches.map((mismatch) => [mismatch.field, mismatch.actual]),
      [
        ['tcbStatus', 'ConfigurationAndSWHardeningNeeded'],
        ['advisoryIds', 'not ignored: INTEL-SA-00289, INTEL-SA-00615'],
      ],
    );
  });

  it('admits genuine evidence to a mode none session without variants', async () => {
    const configuration = await (await attest('dev-none')).send();
    assert.equal(configuration.session, 'dev-none');
  });

  it('refuses evidence whose report data binds another nonce', async () => {
    cas.pin.value = false;
    try {
      const error = await rejection((await attest('by-mrenclave')).send);
      assert.equal(error.code, 'EVIDENCE_INVALID');
      assert.match(error.message, /does not bind this nonce and client public key/);
    } finally {
      cas.pin.value = true;
    }
  });

  it('refuses a replayed request', async () => {
    const first = await attest('by-mrenclave');
    await first.send();
    const error = await rejection(first.send);
    assert.equal(error.code, 'EVIDENCE_REPLAYED');
  });

  it('refuses simulated evidence for a hardware session with 403 naming the reason', async () => {
    const platform = await openPlatform({ mode: 'simulation', platformDir: join(cas.dataDir, '..', 'service-platform') });
    const error = await rejection(
      (await attest('by-mrenclave', (nonce, spki) => ({ ...createSimulatedEvidence(platform, 'service-key', nonce, spki) }))).send,
    );
    assert.equal(error.code, 'SIMULATION_NOT_ALLOWED');
    assert.equal(error.details?.['status'], 403);
    assert.match(error.message, /requires hardware attestation \(security\.attestation\.mode is "hardware"\)/);
  });

  it('refuses evidence labelled with another TEE type', async () => {
    const error = await rejection((await attest('by-mrenclave', () => ({ type: 'tdx', quote: sgx.quote.toString('base64') }))).send);
    assert.equal(error.code, 'EVIDENCE_INVALID');
    assert.match(error.message, /labelled "tdx" but contains SGX evidence/);
  });

  it('verifies with the persisted collateral after a restart while the PCS is down', async () => {
    await cas.close();
    const restarted = await startHardwareCas(sgx, { dataDir: cas.dataDir, platformDir: cas.platformDir });
    try {
      await stop(restarted.pcs.server);
      const key = await newIdentity();
      const client = restarted.ownerClient.withClientKey(key.privateKeyPem, key.certificatePem);
      const { nonce } = await client.requestNonce();
      const configuration = await client.fetchConfiguration({ session: 'by-mrenclave', service: 'app', nonce, evidence: { ...hardwareEvidence('sgx', sgx.quote) }, hostArguments: [], hostEnvironment: {} });
      assert.equal(configuration.service, 'app');
      assert.equal(restarted.pcs.requests.length, 0);
    } finally {
      await restarted.server.close('shutdown');
    }
  });
});

describe('configfs-tsm evidence through cas config fetch (recorded TDX quote)', () => {
  const tdx = loadSample('tdx-v4-platform-ca');
  let cas: HardwareCas;

  before(async () => {
    cas = await startHardwareCas(tdx);
    await cas.ownerClient.createSession(`name: td
version: "0.3"
services:
  - name: app
    command: /bin/app
    attestation:
      - tdx: {mrtd: "${String(tdx.measurements['mrtd'])}", rtmr0: "${String(tdx.measurements['rtmr0'])}"}
`);
  });

  after(async () => {
    await cas?.close();
  });

  /** A configfs-tsm report directory of real files whose entry returns the recorded quote. */
  function configfsLayout(): { base: string; entry: string } {
    const base = join(tempDir('tsm'), 'report');
    const entry = join(base, 'entry0');
    mkdirSync(entry, { recursive: true });
    writeFileSync(join(entry, 'provider'), 'tdx_guest\n');
    writeFileSync(join(entry, 'outblob'), tdx.quote);
    return { base, entry };
  }

  it('releases configuration for a configfs-tsm quote', async () => {
    const { base, entry } = configfsLayout();
    let source = '';
    const configuration = await fetchConfiguration(cas.ownerClient, {
      session: 'td',
      service: 'app',
      platformDir: join(cas.dataDir, '..', 'no-platform'),
      hostArguments: [],
      hostEnvironment: {},
      evidence: { source: 'auto', configfsTsmPath: base, configfsTsmEntry: 'entry0', gramineAttestationPath: join(base, 'no-gramine') },
      onEvidence: (evidence) => {
        source = evidence.source;
      },
    });
    assert.equal(configuration.service, 'app');
    assert.equal(source, 'configfs-tsm');
    // The source wrote 64 bytes of report data: reportDataFor(the pinned nonce, the ephemeral key).
    assert.equal(readFileSync(join(entry, 'inblob')).length, 64);
    assert.equal(existsSync(join(cas.dataDir, '..', 'no-platform')), false, 'no simulation platform key was created');
  });

  it('binds the nonce and the TLS key into inblob', async () => {
    const { base, entry } = configfsLayout();
    cas.pin.value = false;
    try {
      const error = await rejection(() =>
        fetchConfiguration(cas.ownerClient, {
          session: 'td',
          service: 'app',
          platformDir: join(cas.dataDir, '..', 'no-platform'),
          hostArguments: [],
          hostEnvironment: {},
          evidence: { source: 'configfs-tsm', configfsTsmPath: base, configfsTsmEntry: 'entry0' },
        }),
      );
      // A random nonce: the recorded quote cannot bind it, but what the client wrote must.
      assert.equal(error.code, 'EVIDENCE_INVALID');
      const written = readFileSync(join(entry, 'inblob'));
      assert.equal(written.toString('hex'), error.details?.['expected']);
    } finally {
      cas.pin.value = true;
    }
  });
});

describe('SEV-SNP evidence through the CAS API (recorded Milan report)', () => {
  const dir = join(samples, 'go-sev-guest/verify/testdata');
  const report = readFileSync(join(dir, 'attestation.bin'));
  const vcek = readFileSync(join(dir, 'vcek.testcer'));
  const chainPem = readFileSync(join(dir, 'milan.testcer'), 'utf8');
  const [askPem, arkPem] = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
  const at = new Date('2025-07-01T00:00:00Z');
  const recorded = verifySnpReport(report, { vcek, ask: askPem!, trustedArks: [arkPem!], at });
  const kdsRequests: string[] = [];
  let kds: Server;
  let cas: HardwareCas;

  before(async () => {
    // A KDS-like server: the VCEK for any Milan chip and TCB, and the ASK and ARK.
    kds = createServer((request, response) => {
      kdsRequests.push(request.url!);
      const path = new URL(request.url!, 'http://127.0.0.1').pathname;
      if (path === '/vcek/v1/Milan/cert_chain') response.end(chainPem);
      else if (path.startsWith('/vcek/v1/Milan/')) response.end(vcek);
      else response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => kds.listen(0, '127.0.0.1', resolve));
    const arkFile = join(tempDir('ark'), 'ark.pem');
    writeFileSync(arkFile, arkPem!);
    const pcs = await startPcs(loadSample('sgx-v3-processor-ca').collateral, collateralKeyForQuote(loadSample('sgx-v3-processor-ca').quote));
    cas = await startWithPcs({ reportData: recorded.reportData, at }, pcs, undefined, { amdArkFile: arkFile, kdsUrl: `http://127.0.0.1:${(kds.address() as AddressInfo).port}` });
    await cas.ownerClient.createSession(`name: guest
version: "0.3"
services:
  - name: app
    command: /bin/app
    attestation:
      - snp: {measurement: ["${recorded.measurements.measurement!}"], policy: "0x${BigInt(recorded.measurements.policy!).toString(16)}"}
security:
  attestation:
    tolerate: [debug-mode]
`);
  });

  after(async () => {
    await cas?.close();
    kds?.closeAllConnections();
    await new Promise<void>((resolve) => (kds === undefined ? resolve() : kds.close(() => resolve())));
  });

  it('releases the configuration for a matching measurement, with the VCEK from KDS', async () => {
    const key = await newIdentity();
    const client = cas.ownerClient.withClientKey(key.privateKeyPem, key.certificatePem);
    const { nonce } = await client.requestNonce();
    const configuration = await client.fetchConfiguration({ session: 'guest', service: 'app', nonce, evidence: { ...hardwareEvidence('snp', report) }, hostArguments: [], hostEnvironment: {} });
    assert.equal(configuration.service, 'app');
    assert.ok(kdsRequests.some((url) => url.startsWith(`/vcek/v1/Milan/${recorded.measurements.chipId!}?`)));
    const attested = cas.auditEntries().filter((entry) => entry.event === 'service.attested').at(-1);
    assert.equal(attested?.details['evidenceType'], 'sev-snp');
    assert.equal(attested?.details['tcbStatus'], 'NotEvaluated');
  });
});
