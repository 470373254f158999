import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * Child process of the HTTPS floor in figure 1: a bare node:https server with the TLS settings of
 * `cas serve` (see https-floor.ts). It receives its key and certificate over the IPC channel, sends back
 * its port, and responds to every request by parsing its JSON body and sending a small JSON object.
 */
process.once('message', (message: { key: string; cert: string }) => {
  const server = createServer(
    {
      key: message.key,
      cert: message.cert,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // Fastify's default, which `cas serve` keeps.
      keepAliveTimeout: 72_000,
    },
    (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        const body = JSON.stringify({ received: Object.keys(parsed).length, at: new Date().toISOString() });
        response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
        response.end(body);
      });
    },
  );
  server.listen(0, '127.0.0.1', () => {
    process.send!({ port: (server.address() as AddressInfo).port });
  });
  process.once('disconnect', () => {
    server.close();
    server.closeAllConnections();
  });
});
