import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { CasClient } from '../../src/client/cas-client.js';
import { FILE_NAMES, HEALTH_PATHS } from '../../src/config/defaults.js';
import { createSimulatedEvidence } from '../../src/server/evidence/simulation.js';
import { openPlatform, type Platform } from '../../src/store/index.js';
import { certificateFingerprint, createSelfSignedCertificate, spkiOfCertificate } from '../../src/tls/certificates.js';
import { sessionText } from '../cas-setup.js';
import {
  benchTempDir,
  fmt,
  freeLoopbackPort,
  measureEcdsaP256,
  percentile,
  removeDir,
  spawnCasServe,
  waitForStatus200,
  type BenchOptions,
  type FigureResult,
} from '../harness.js';

const CLIENTS = 32;
const TARGET_RATIO = 0.8;
const SESSION = 'bench-app';
const SERVICE = 'app';

/**
 * Figure 1: attestation plus configuration delivery against a real `cas serve` process. Each of 32
 * concurrent clients keeps one HTTPS connection open (keep-alive) with its own TLS client key and repeats:
 * request a nonce, sign simulated evidence binding the nonce to its key, request the configuration. The
 * limit is the rate at which one thread can do the server's signature operations for one round.
 */
export async function attestationThroughputFigure(options: BenchOptions): Promise<FigureResult> {
  const root = benchTempDir('attest');
  const dataDir = join(root, 'data');
  const warmupMs = options.quick ? 1000 : 3000;
  const durationMs = options.quick ? 4000 : 20_000;
  const server = spawnCasServe(await freeLoopbackPort(), ['--data-dir', dataDir, '--platform-dir', join(root, 'server-platform'), '--no-snapshots']);
  try {
    options.progress('figure 1: starting cas serve, provisioning, creating the session');
    await waitForStatus200(server, HEALTH_PATHS.readiness, { intervalMs: 20, timeoutMs: 60_000 });
    const casUrl = new URL(server.url);
    const owner = await createSelfSignedCertificate({ commonName: 'bench owner', usage: 'client', validDays: 1 });
    const ownerClient = new CasClient({ casUrl, clientKeyPem: owner.privateKeyPem, clientCertificatePem: owner.certificatePem, trust: { kind: 'unverified' } });
    await ownerClient.provision(readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim());
    const { certificateSha256 } = await ownerClient.status();
    await ownerClient.createSession(sessionText(SESSION));
    const servicePlatform = await openPlatform({ mode: 'simulation', platformDir: join(root, 'service-platform') });

    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => ServiceClient.create(casUrl, certificateSha256, servicePlatform)));
    const auditLinesBefore = countAuditLines(dataDir);

    options.progress(`figure 1: ${CLIENTS} clients for ${durationMs / 1000} s after a ${warmupMs / 1000} s warm-up`);
    const latencies: number[] = [];
    let rounds = 0;
    const windowStart = performance.now() + warmupMs;
    const windowEnd = windowStart + durationMs;
    const loop = async (client: ServiceClient): Promise<void> => {
      while (performance.now() < windowEnd) {
        const started = performance.now();
        await client.attestAndFetch();
        if (started >= windowStart) latencies.push(performance.now() - started);
        rounds += 1;
      }
    };
    const loops = clients.map((client) => loop(client));
    await Promise.all(loops);
    const elapsed = performance.now() - windowStart;
    const measured = latencies.length;
    const connections = clients.reduce((sum, client) => sum + client.connections, 0);
    for (const client of clients) client.close();

    // Audit entries that the server signed per round, read from the log it wrote during the run.
    const signsPerRound = (countAuditLines(dataDir) - auditLinesBefore) / rounds;
    const verifiesPerRound = 1;
    options.progress('figure 1: measuring ECDSA P-256 sign and verify rates');
    const ecdsa = measureEcdsaP256(options.quick ? 500 : 2000);
    const limit = 1 / (verifiesPerRound / ecdsa.verifyPerSecond + signsPerRound / ecdsa.signPerSecond);
    const rate = (measured * 1000) / elapsed;
    const ratio = rate / limit;

    return {
      number: 1,
      title: 'Attestation plus configuration delivery over HTTPS (keep-alive, 32 concurrent clients, simulated evidence)',
      values: [
        { label: 'rounds/s (nonce + evidence + configuration)', value: fmt(rate) },
        { label: 'round latency p50', value: `${fmt(percentile(latencies, 0.5), 1)} ms` },
        { label: 'round latency p99', value: `${fmt(percentile(latencies, 0.99), 1)} ms` },
        { label: 'TLS connections opened by the 32 clients', value: fmt(connections) },
      ],
      limit: [
        { label: 'server signature operations per round', value: `${verifiesPerRound} ECDSA P-256 verify (evidence) + ${fmt(signsPerRound, 2)} ECDSA P-256 signs (audit entries, counted in the log)` },
        { label: 'node:crypto ECDSA P-256 sign/s, verify/s (one thread)', value: `${fmt(ecdsa.signPerSecond)}, ${fmt(ecdsa.verifyPerSecond)}` },
        { label: 'crypto-bound rate = 1 ÷ (verifies ÷ verify rate + signs ÷ sign rate)', value: `${fmt(limit)} rounds/s` },
      ],
      checks: [{ label: 'rounds/s ÷ crypto-bound rate', value: fmt(ratio, 2), target: `≥ ${TARGET_RATIO}`, met: ratio >= TARGET_RATIO }],
      notes: ratio >= TARGET_RATIO ? [] : throughputNotes(signsPerRound),
      method: [
        'A real `cas serve` process (built CLI, simulation mode, default log level info, --no-snapshots) on a free loopback port with temporary data and platform directories; the bench process provisions it and creates one session with attestation mode none.',
        `${CLIENTS} clients in the bench process, each with its own ephemeral P-256 TLS client key and one keep-alive HTTPS connection (node:https Agent, maxSockets 1), run rounds back to back: POST /v1/nonces, sign simulated evidence with the service platform key binding the nonce to the client key, POST /v1/configuration. Every response is checked.`,
        `One round is one attestation plus configuration delivery; rate and latency are over the ${durationMs / 1000} s after a ${warmupMs / 1000} s warm-up, counting rounds that started in the window.`,
        "The limit counts only the server's signature operations, since the server is one Node.js thread; the client's evidence signature runs in the bench process, which shares the machine's 2 cores with the server.",
      ],
    };
  } finally {
    await server.stop();
    removeDir(root);
  }
}

/** The cause of a missed target, from CPU profiles of cas serve taken with CAS_BENCH_CPU_PROF during quick runs. */
function throughputNotes(signsPerRound: number): string[] {
  return [
    `Cause: every round waits for ${fmt(signsPerRound)} audit appends in series (service.attested, then config.released; each awaits its fsync), and after each append the server stores the audit head in SQLite (storeAuditHead → CasDatabase.putMeta, a WAL commit with synchronous=FULL). better-sqlite3 commits synchronously, so each of those fsyncs blocks the event loop, and they run one at a time behind db.writeGate. Throughput is therefore bounded by about half the disk's fsync rate (figure 3 measures it), far below the crypto bound.`,
    "Profile of cas serve over a quick run (CAS_BENCH_CPU_PROF=DIR npm run bench -- --quick --only 1): about a quarter of all samples are in better-sqlite3's transaction function (the synchronous commit) and another quarter idle (waiting for the audit fsync); signing and verifying are under 2%.",
    'Fix, for the owners of src/server: write the audit head once per audit batch instead of once per entry (or only with the next state change, since AuditLog.open only needs it to detect truncation), never run a synchronous fsync on the event loop for it, and write one audit entry per release instead of two.',
  ];
}

/** Lines in every audit log file of the data directory: one line per signed entry. */
function countAuditLines(dataDir: string): number {
  const dir = join(dataDir, 'audit');
  let lines = 0;
  for (const name of readdirSync(dir)) {
    const text = readFileSync(join(dir, name), 'utf8');
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) lines += 1;
  }
  return lines;
}

/** One service instance: an ephemeral TLS client key with one keep-alive connection to the CAS. */
class ServiceClient {
  connections = 0;

  private constructor(
    private readonly casUrl: URL,
    private readonly certificateSha256: string,
    private readonly platform: Platform,
    private readonly spkiDer: Buffer,
    private readonly agent: Agent,
  ) {}

  static async create(casUrl: URL, certificateSha256: string, platform: Platform): Promise<ServiceClient> {
    const ephemeral = await createSelfSignedCertificate({ commonName: 'bench service', usage: 'client', validDays: 1 });
    // The CAS certificate is self-signed; each new connection is checked against its fingerprint instead.
    const agent = new Agent({ keepAlive: true, maxSockets: 1, key: ephemeral.privateKeyPem, cert: ephemeral.certificatePem, rejectUnauthorized: false });
    return new ServiceClient(casUrl, certificateSha256, platform, spkiOfCertificate(ephemeral.certificatePem), agent);
  }

  async attestAndFetch(): Promise<void> {
    const { nonce } = (await this.post('/v1/nonces', {})) as { nonce: string };
    const evidence = createSimulatedEvidence(this.platform, 'service-key', nonce, this.spkiDer);
    const configuration = (await this.post('/v1/configuration', { session: SESSION, service: SERVICE, nonce, evidence })) as {
      environment?: Record<string, string>;
    };
    const password = configuration.environment?.['DB_PASSWORD'];
    if (typeof password !== 'string' || password.length !== 24) {
      throw new Error(`the configuration has no 24-character DB_PASSWORD: ${JSON.stringify(configuration).slice(0, 200)}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private post(path: string, body: unknown): Promise<unknown> {
    const payload = Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: this.casUrl.hostname, port: this.casUrl.port, path, method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 200) reject(new Error(`POST ${path} returned ${res.statusCode}: ${text.slice(0, 300)}`));
            else resolve(JSON.parse(text));
          });
          res.on('error', reject);
        },
      );
      req.on('socket', (socket) => {
        const tlsSocket = socket as TLSSocket;
        if ((tlsSocket as TLSSocket & { benchChecked?: boolean }).benchChecked === true) return;
        (tlsSocket as TLSSocket & { benchChecked?: boolean }).benchChecked = true;
        this.connections += 1;
        tlsSocket.once('secureConnect', () => {
          const presented = tlsSocket.getPeerCertificate(false).raw;
          if (presented === undefined || certificateFingerprint(presented) !== this.certificateSha256) {
            tlsSocket.destroy(new Error('the CAS presented another certificate than the one in its status'));
          }
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }
}
