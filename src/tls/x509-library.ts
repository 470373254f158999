import { webcrypto } from 'node:crypto';
import type * as X509 from '@peculiar/x509';

let library: Promise<typeof X509> | undefined;

/**
 * Loads @peculiar/x509 on first use, with node:crypto's WebCrypto as its provider. The library and its
 * ASN.1 packages took about 90 ms to load on the 2-core benchmark VM, and only issuing a certificate
 * needs them, so loading them eagerly slowed every `cas` command. `cas serve` still loads them at start,
 * for the in-memory certificate of its standby server.
 */
export function loadX509(): Promise<typeof X509> {
  library ??= (async () => {
    // @peculiar/x509 reads decorator metadata when its modules load.
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  })();
  return library;
}
