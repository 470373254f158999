import { readPinnedCertificate } from '../../client/home.js';
import type { CasClient } from '../../client/cas-client.js';
import { CasError } from '../../errors/cas-error.js';
import { runCas } from '../../server/testing/cas-process.js';
import type { CasNodeProcess, LocalCluster } from './local-cluster.js';

export interface BootstrappedCluster {
  primary: CasNodeProcess;
  /** The CAS certificate, pinned by the owner; every later primary presents the same one. */
  certificatePem: string;
}

/**
 * Brings a fresh cluster to a provisioned state with the built CLI, as an operator would. Starts `primary`,
 * provisions the owner (`cas provision`) and pins the CAS certificate (`cas attest --accept-simulation`).
 * Then registers each of `backups` as a backup target (`cas backup register`), so their platforms can open
 * the database. Starts no backup process.
 */
export async function bootstrapCluster(cluster: LocalCluster, primaryNode: string, backups: string[], timeoutMs = 30_000): Promise<BootstrappedCluster> {
  const primary = await cluster.start(primaryNode, timeoutMs);
  await primary.waitUntilPrimary(timeoutMs);
  const url = cluster.url(primaryNode);
  const env = cluster.ownerEnvironment();

  await runCli(['provision', '--cas', url, '--token', cluster.provisioningToken()], env);
  await runCli(['attest', '--cas', url, '--accept-simulation'], env);
  for (const node of backups) {
    await runCli(['backup', 'register', '--cas', url, '--platform-dir', cluster.platformDir(node)], env);
  }

  const certificatePem = readPinnedCertificate(new URL(url), cluster.ownerHome);
  if (certificatePem === undefined) throw new CasError('INTERNAL', `cas attest did not pin a certificate for ${url} in ${cluster.ownerHome}`);
  return { primary, certificatePem };
}

async function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const result = await runCas(args, env, { timeoutMs: 30_000 });
  if (result.code !== 0) {
    throw new CasError('INTERNAL', `cas ${args.slice(0, 2).join(' ')} failed with exit code ${String(result.code)}: ${result.stderr.trim()}`);
  }
}

/** Returns a minimal session that `cas session create` accepts, with attestation mode none so simulation may read it. */
export function minimalSession(name: string): string {
  return `name: ${name}
version: "0.3"
services:
  - name: app
    command: /bin/true
security:
  attestation:
    mode: none
`;
}

/**
 * Creates session `name` on the first node that acknowledges it, trying `clients` in order. Returns the
 * node that acknowledged, or undefined when none did (each error counts as "not acknowledged").
 */
export async function createSessionOnAnyNode(clients: Array<{ node: string; client: CasClient }>, name: string): Promise<string | undefined> {
  for (const { node, client } of clients) {
    try {
      await client.createSession(minimalSession(name));
      return node;
    } catch {
      // Rejected, not the primary, or not reachable, so try the next node.
    }
  }
  return undefined;
}
