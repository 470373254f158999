import { createServer, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { PortForward, type KubeConfig } from '@kubernetes/client-node';
import type WebSocket from 'ws';
import { CasError } from '../../errors/cas-error.js';

export interface PortForwardHandle {
  /** Local port on 127.0.0.1 that forwards to the pod. */
  localPort: number;
  close(): Promise<void>;
}

/**
 * Forwards a local loopback port to a pod's port through the API server (the pods/portforward
 * WebSocket), as `kubectl port-forward` does. Each local connection opens its own WebSocket stream.
 */
export async function forwardPodPort(
  config: KubeConfig,
  namespace: string,
  podName: string,
  podPort: number,
  onError: (message: string) => void,
): Promise<PortForwardHandle> {
  const forwarder = new PortForward(config, true);
  const sockets = new Set<Socket>();

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // client-node writes pod output to this socket even after the local client has gone away; the write then
    // fails with EPIPE as an 'error' event, which would crash the plugin if nothing listened for it.
    socket.on('error', (error) => {
      onError(`port-forward to ${podName}:${podPort}: local connection failed: ${error.message}`);
      socket.destroy();
    });
    const errors = new PassThrough();
    errors.on('data', (chunk: Buffer) => onError(`port-forward to ${podName}:${podPort}: ${chunk.toString('utf8').trim()}`));
    forwarder
      .portForward(namespace, podName, [podPort], socket, errors, socket)
      .then((connection) => {
        // client-node does not end the local socket when the API server closes the stream; do it here.
        const ws = connection as WebSocket;
        ws.on('close', () => socket.end());
        ws.on('error', (error) => {
          onError(`port-forward to ${podName}:${podPort}: stream failed: ${error.message}`);
          socket.destroy();
        });
        socket.on('close', () => ws.close());
      })
      .catch((error: unknown) => {
        onError(`port-forward to ${podName}:${podPort} failed: ${error instanceof Error ? error.message : String(error)}`);
        socket.destroy();
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new CasError('INTERNAL', 'the port-forward listener has no TCP address');
  }

  return {
    localPort: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
