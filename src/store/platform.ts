import { randomBytes } from 'node:crypto';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { chmod, link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FILE_NAMES } from '../config/defaults.js';
import { CasError, isCasError } from '../errors/cas-error.js';
import { silentLogger, type Logger } from '../logging/logger.js';
import { parsePlatformPublicKey, platformIdFromSpki, publicKeyDer, unwrapKeyWithPrivateKey } from './key-wrap.js';
import type { KeyStoreEntry, Platform, PlatformMode } from './types.js';

/**
 * Prefix of every message the platform key signs. The same P-256 key serves ECDH (key unwrapping) and ECDSA
 * (signatures); the prefix keeps its signatures apart from any other protocol that signs raw data.
 */
export const PLATFORM_SIGNATURE_CONTEXT = Buffer.from('CAS platform signature v1\0', 'ascii');

/** Device files through which Linux exposes SGX enclaves, TDX guest reports and SEV-SNP guest reports. */
const TEE_DEVICES = ['/dev/sgx_enclave', '/dev/tdx_guest', '/dev/sev-guest'];

export interface OpenPlatformOptions {
  mode: PlatformMode;
  /** Directory of the platform key file (simulation mode). */
  platformDir: string;
  logger?: Logger;
}

/** Opens this machine's platform: the simulated key file, or fails in hardware mode (no TEE sealing here). */
export async function openPlatform(options: OpenPlatformOptions): Promise<Platform> {
  if (options.mode === 'hardware') {
    // NOTE: hardware mode needs the platform key sealed by the TEE (SGX sealing or a TDX/SNP derived key).
    // This implementation has no sealing backend, so hardware mode cannot open a platform.
    const devices = TEE_DEVICES.filter((device) => existsSync(device));
    const reason =
      devices.length === 0
        ? `sealing the platform key needs a TEE, this machine has none of ${TEE_DEVICES.join(', ')}, and this build has no TEE sealing support`
        : `this machine has ${devices.join(', ')}, but this build has no support for sealing the platform key with a TEE`;
    throw new CasError(
      'PLATFORM_KEY_ERROR',
      `Hardware mode is unavailable: ${reason}. Run with --mode simulation.`,
      { details: { mode: 'hardware', teeDevices: devices } },
    );
  }
  return loadOrCreateSimulationPlatform(options.platformDir, options.logger);
}

/**
 * Loads the simulated platform key from `<dir>/platform.key` (PKCS#8 PEM, P-256), creating the directory
 * (mode 0700) and the key file (mode 0600) on first use. Concurrent first starts on one machine agree on one
 * key: the file is written under a temporary name and linked into place, and `link` fails when the name exists.
 * A key file readable by group or others is rejected, as ssh does for private keys.
 */
export async function loadOrCreateSimulationPlatform(dir: string, logger: Logger = silentLogger()): Promise<Platform> {
  const path = join(dir, FILE_NAMES.platformKey);
  await ensurePrivateDirectory(dir, logger);

  let privateKey = await readPlatformKeyFile(path);
  if (privateKey === undefined) {
    const created = await createPlatformKeyFile(dir, path);
    privateKey = created.key;
    if (created.won) logger.info({ path, platformId: simulationPlatform(privateKey).id }, 'created simulation platform key');
  }
  const platform = simulationPlatform(privateKey);
  logger.info({ platformId: platform.id, mode: 'simulation', path }, 'platform key loaded (simulation: the key is a file, not sealed by a TEE)');
  return platform;
}

/** Builds a simulation Platform around a P-256 private key. */
export function simulationPlatform(privateKey: KeyObject): Platform {
  const publicKey = createPublicKey(privateKey);
  const der = publicKeyDer(publicKey);
  const id = platformIdFromSpki(der);
  return {
    id,
    mode: 'simulation',
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKeyDer: der,
    unwrapDatabaseKey(entry: KeyStoreEntry): Buffer {
      if (entry.platformId !== id) {
        throw new CasError('KEY_STORE_NO_ENTRY', `The key store entry is for platform ${entry.platformId}, not for this platform ${id}`);
      }
      return unwrapKeyWithPrivateKey(privateKey, id, entry.wrappedKey);
    },
    sign(data: Buffer): Buffer {
      return sign('sha256', Buffer.concat([PLATFORM_SIGNATURE_CONTEXT, data]), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    },
  };
}

/**
 * Verifies a signature made by `Platform.sign`, with the public key as PEM or as a key parsed by
 * `parsePlatformPublicKey`. Returns false for a wrong or malformed signature; throws INVALID_ARGUMENT
 * when a PEM key is not a P-256 SPKI key.
 */
export function verifyPlatformSignature(publicKey: string | KeyObject, data: Buffer, signature: Buffer): boolean {
  const key = typeof publicKey === 'string' ? parsePlatformPublicKey(publicKey) : publicKey;
  if (signature.length !== 64) return false;
  return verify('sha256', Buffer.concat([PLATFORM_SIGNATURE_CONTEXT, data]), { key, dsaEncoding: 'ieee-p1363' }, signature);
}

/** Returns the platform id of a P-256 public key in SPKI PEM form. */
export function platformIdFromPublicKeyPem(publicKeyPem: string): string {
  return platformIdFromSpki(publicKeyDer(parsePlatformPublicKey(publicKeyPem)));
}

async function ensurePrivateDirectory(dir: string, logger: Logger): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const info = await stat(dir);
    if (!info.isDirectory()) throw new Error('not a directory');
    if ((info.mode & 0o077) !== 0) {
      logger.warn({ dir, mode: (info.mode & 0o777).toString(8) }, 'platform directory is accessible to group or others; 0700 is expected');
    }
  } catch (error) {
    throw new CasError('PLATFORM_KEY_ERROR', `Cannot use platform directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
}

async function readPlatformKeyFile(path: string): Promise<KeyObject | undefined> {
  let pem: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      throw new CasError(
        'PLATFORM_KEY_ERROR',
        `Platform key file ${path} has mode ${(info.mode & 0o777).toString(8)}, readable by group or others; run chmod 600 ${path}`,
      );
    }
    pem = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (isCasError(error)) throw error;
    throw new CasError('PLATFORM_KEY_ERROR', `Cannot read platform key file ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parsePlatformPrivateKey(pem, path);
}

function parsePlatformPrivateKey(pem: string, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw new CasError('PLATFORM_KEY_ERROR', `Platform key file ${path} is not a PEM private key`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CasError('PLATFORM_KEY_ERROR', `Platform key file ${path} does not contain an EC P-256 private key`);
  }
  return key;
}

/** Creates the key file; `won` is false when a concurrent process created it first and its key was loaded. */
async function createPlatformKeyFile(dir: string, path: string): Promise<{ key: KeyObject; won: boolean }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const temporary = join(dir, `.${FILE_NAMES.platformKey}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    try {
      await handle.chmod(0o600);
      await handle.writeFile(pem, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const existing = await readPlatformKeyFile(path);
      if (existing === undefined) throw error;
      return { key: existing, won: false };
    }
    await syncDirectory(dir);
    await chmod(path, 0o600);
    return { key: privateKey, won: true };
  } catch (error) {
    if (isCasError(error)) throw error;
    throw new CasError('PLATFORM_KEY_ERROR', `Cannot create platform key file ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
