import { createPrivateKey, createPublicKey, generateKeyPair as generateKeyPairCallback, webcrypto, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { KeyType } from '../policy/types.js';

const generateKeyPairAsync = promisify(generateKeyPairCallback);

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

/**
 * Generates a key pair of `keyType` with node:crypto and returns it as PKCS#8 and SPKI PEM. The key is
 * generated on the libuv thread pool: an RSA key takes long enough that generating many of them
 * synchronously would stop the server from answering anything else, health probes included.
 */
export async function generateKeyPair(keyType: KeyType): Promise<KeyPairPem> {
  const pair = await (() => {
    switch (keyType) {
      case 'P-256':
        return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
      case 'P-384':
        return generateKeyPairAsync('ec', { namedCurve: 'P-384' });
      case 'Ed25519':
        return generateKeyPairAsync('ed25519');
      case 'RSA-2048':
        return generateKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
      case 'RSA-3072':
        return generateKeyPairAsync('rsa', { modulusLength: 3072, publicExponent: 0x10001 });
    }
  })();
  return {
    privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** Re-encodes any PEM private key (PKCS#8, SEC1, PKCS#1) as PKCS#8 PEM with its SPKI PEM public key. */
export function normaliseKeyPair(pem: string): KeyPairPem & { key: KeyObject } {
  const key = createPrivateKey(pem);
  return {
    key,
    privateKeyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string,
  };
}

/** WebCrypto parameters to import a key of `keyType` and to sign certificates with it. */
export function webCryptoAlgorithms(keyType: KeyType): { importAlgorithm: webcrypto.AlgorithmIdentifier | webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams; signingAlgorithm: webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams } {
  switch (keyType) {
    case 'P-256':
      return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-256' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } };
    case 'P-384':
      return { importAlgorithm: { name: 'ECDSA', namedCurve: 'P-384' }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } };
    case 'Ed25519':
      return { importAlgorithm: { name: 'Ed25519' }, signingAlgorithm: { name: 'Ed25519' } };
    case 'RSA-2048':
    case 'RSA-3072':
      return {
        importAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
        signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      };
  }
}

/** Imports a PKCS#8 PEM private key into WebCrypto for signing. */
export async function importSigningKey(privateKeyPem: string, keyType: KeyType): Promise<webcrypto.CryptoKey> {
  const der = createPrivateKey(privateKeyPem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, webCryptoAlgorithms(keyType).importAlgorithm, false, ['sign']);
}

/** Imports an SPKI PEM public key into WebCrypto. */
export async function importPublicKey(publicKeyPem: string, keyType: KeyType): Promise<webcrypto.CryptoKey> {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return webcrypto.subtle.importKey('spki', der, webCryptoAlgorithms(keyType).importAlgorithm, true, ['verify']);
}
