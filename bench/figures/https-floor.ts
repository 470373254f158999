import { fork } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createSelfSignedCertificate } from '../../src/tls/certificates.js';
import { mainThreadSchedule, ownCpuMs } from '../harness.js';

/** Rounds per second that HTTPS and HTTP parsing alone allow, measured against a bare node:https server. */
export interface HttpsFloor {
  roundsPerSecond: number;
  /** CPU time of the server's main thread per round, in milliseconds. */
  serverCpuMsPerRound: number;
  /** Shares of the window in which the server's main thread was on a CPU and runnable but waiting for one. */
  onCpu: number;
  runnableWait: number;
  /** CPU use of this process (the clients) in the window, in cores. */
  clientCpu: number;
}

/**
 * Runs the round of figure 1 against a bare node:https server in its own process. Each of `clients` clients
 * has its own P-256 TLS client certificate and one keep-alive connection. Per round it sends two POSTs,
 * `{}` and then `secondBody`, and reads the small JSON response to each. The server has the TLS settings of
 * `cas serve`: a P-256 certificate, a requested but unverified client certificate, TLS 1.2 or later.
 */
export async function measureHttpsFloor(options: { clients: number; warmupMs: number; durationMs: number; secondBody: Buffer }): Promise<HttpsFloor> {
  const identity = await createSelfSignedCertificate({ commonName: 'https floor', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server', validDays: 1 });
  const child = fork(fileURLToPath(new URL('./https-floor-server.js', import.meta.url)), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const exited = once(child, 'exit');
  try {
    child.send({ key: identity.privateKeyPem, cert: identity.certificatePem });
    const started = once(child, 'message') as Promise<[{ port: number }]>;
    const [{ port }] = await Promise.race([started, exited.then(() => Promise.reject(new Error('the HTTPS floor server exited before it listened')))]);
    const agents = await Promise.all(
      Array.from({ length: options.clients }, async () => {
        const client = await createSelfSignedCertificate({ commonName: 'https floor client', usage: 'client', validDays: 1 });
        return new Agent({ keepAlive: true, maxSockets: 1, key: client.privateKeyPem, cert: client.certificatePem, rejectUnauthorized: false });
      }),
    );

    const firstBody = Buffer.from('{}');
    let rounds = 0;
    const windowStart = performance.now() + options.warmupMs;
    const windowEnd = windowStart + options.durationMs;
    let atWindowStart = { server: { onCpuMs: 0, runnableWaitMs: 0 }, clientCpuMs: 0 };
    const sampler = setTimeout(() => {
      atWindowStart = { server: mainThreadSchedule(child.pid!), clientCpuMs: ownCpuMs() };
    }, options.warmupMs);
    await Promise.all(
      agents.map(async (agent) => {
        while (performance.now() < windowEnd) {
          const started = performance.now();
          await postJson(agent, port, firstBody);
          await postJson(agent, port, options.secondBody);
          if (started >= windowStart) rounds += 1;
        }
      }),
    );
    clearTimeout(sampler);
    const elapsed = performance.now() - windowStart;
    const server = mainThreadSchedule(child.pid!);
    const clientCpuMs = ownCpuMs() - atWindowStart.clientCpuMs;
    for (const agent of agents) agent.destroy();
    return {
      roundsPerSecond: (rounds * 1000) / elapsed,
      serverCpuMsPerRound: (server.onCpuMs - atWindowStart.server.onCpuMs) / rounds,
      onCpu: (server.onCpuMs - atWindowStart.server.onCpuMs) / elapsed,
      runnableWait: (server.runnableWaitMs - atWindowStart.server.runnableWaitMs) / elapsed,
      clientCpu: clientCpuMs / elapsed,
    };
  } finally {
    child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Sends one POST with a JSON body and resolves with the parsed response; rejects on a status other than 200. */
function postJson(agent: Agent, port: number, payload: Buffer): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      { host: '127.0.0.1', port, path: '/', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (response.statusCode !== 200) reject(new Error(`the HTTPS floor server returned ${response.statusCode}: ${text.slice(0, 200)}`));
          else resolve(JSON.parse(text));
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}
