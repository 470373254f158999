import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IntelCollateral } from '../intel/collateral.js';
import type { CollateralKey } from './pcs-client.js';

// Test support: an Intel PCS-like collateral server on loopback.

/** A request that the server received. */
export interface Recorded {
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * Starts a PCS-like collateral server on loopback that serves one FMSPC's collateral in PCS's response format:
 * signed JSON bodies, issuer chains as URL-encoded PEM headers, the PCK CRL as DER and the root CA CRL as
 * hex, so both encodings that the client accepts are exercised.
 */
export async function startPcs(collateral: IntelCollateral, key: CollateralKey): Promise<{ server: Server; baseUrl: string; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const server = createServer((request, response) => {
    requests.push({ url: request.url!, headers: request.headers });
    const url = new URL(request.url!, 'http://127.0.0.1');
    const send = (body: string | Buffer, headers: Record<string, string> = {}): void => {
      response.writeHead(200, headers);
      response.end(body);
    };
    if (url.pathname === `/${key.teeType}/certification/v4/tcb` && url.searchParams.get('fmspc') === key.fmspc) {
      // Spacing around the members must not matter: only the tcbInfo value's bytes are signed.
      send(`{ "tcbInfo" : ${collateral.tcbInfo} ,\n "signature":"${collateral.tcbInfoSignature.toString('hex')}"}`, {
        'Content-Type': 'application/json',
        'TCB-Info-Issuer-Chain': encodeURIComponent(collateral.tcbInfoIssuerChain),
      });
    } else if (url.pathname === `/${key.teeType}/certification/v4/qe/identity`) {
      send(`{"enclaveIdentity":${collateral.qeIdentity},"signature":"${collateral.qeIdentitySignature.toString('hex')}"}`, {
        'SGX-Enclave-Identity-Issuer-Chain': encodeURIComponent(collateral.qeIdentityIssuerChain),
      });
    } else if (url.pathname === '/sgx/certification/v4/pckcrl' && url.searchParams.get('ca') === key.ca) {
      send(collateral.pckCrl, { 'SGX-PCK-CRL-Issuer-Chain': encodeURIComponent(collateral.pckCrlIssuerChain) });
    } else if (url.pathname === '/sgx/certification/v4/rootcacrl') {
      send(collateral.rootCaCrl.toString('hex'));
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

export async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Starts a PCS-like server on a given port, so a client that keeps its base URL reaches it. */
export async function listenAgain(collateral: IntelCollateral, key: CollateralKey, port: number): Promise<Server> {
  const started = await startPcs(collateral, key);
  await stop(started.server);
  await new Promise<void>((resolve, reject) => {
    started.server.once('error', reject);
    started.server.listen(port, '127.0.0.1', resolve);
  });
  return started.server;
}

