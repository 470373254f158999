import { mkdirSync, openSync, closeSync, writeSync, renameSync, rmSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sendRequest, type TransportOptions } from '../../../client/transport.js';
import { CasError } from '../../../errors/cas-error.js';
import { verifySnapshot } from '../../../snapshots/inspect.js';
import { SNAPSHOT_FILES } from '../../../snapshots/download-routes.js';
import { certificateFingerprint } from '../../../tls/certificates.js';
import { attestDeployedCas } from './deployed-cas.js';
import { requireDeployment, withDeployedCas, type Day2Target } from './inspect-verbs.js';

export interface LocalBackupResult {
  snapshot: string;
  path: string;
  createdAt: string;
  ageSeconds: number;
  changeCounter: number;
  bytes: Record<string, number>;
  checks: string[];
}

/**
 * `--local-backup DIR`: attests the deployed CAS and downloads its newest valid snapshot (manifest,
 * database, key store) over a connection bound to the attested certificate. The copy must then pass the
 * checks of the manifest signature and of each file's size and SHA-256, and the manifest must be signed by
 * this CAS's identity. The files arrive in `DIR/.partial-NAME` and are renamed to `DIR/NAME` only after
 * they verify.
 */
export async function downloadNewestSnapshot(target: Day2Target, directory: string): Promise<LocalBackupResult> {
  const deployment = await requireDeployment(target);
  return withDeployedCas(target, async (cas) => {
    const attested = await attestDeployedCas(cas, deployment.mode);
    if (attested.matchesPin === false) {
      throw new CasError('SERVER_CERT_MISMATCH', `the CAS presents certificate sha256 ${attested.certificateSha256}, not the one pinned for ${cas.serviceUrl}; investigate before copying its data`);
    }
    const transport = cas.transport(attested.certificatePem);
    const listing = (await sendRequest(transport, 'GET', '/v1/snapshots')).body as { snapshots: Array<{ name: string; status: string }> };
    const newest = listing.snapshots.find((entry) => entry.status === 'valid');
    if (newest === undefined) throw new CasError('NOT_FOUND', `CAS "${target.name}" has no valid snapshot yet; snapshots are taken every snapshot interval while the database changes`);

    const finalPath = join(resolve(directory), newest.name);
    if (existsSync(finalPath)) throw new CasError('RESTORE_TARGET_NOT_EMPTY', `${finalPath} exists already; choose another directory or remove it`);
    const partialPath = join(resolve(directory), `.partial-${newest.name}`);
    rmSync(partialPath, { recursive: true, force: true });
    mkdirSync(partialPath, { recursive: true, mode: 0o700 });

    const bytes: Record<string, number> = {};
    try {
      for (const file of SNAPSHOT_FILES) {
        bytes[file] = await downloadFile(transport, newest.name, file, join(partialPath, file));
      }
      const verification = await verifySnapshot(partialPath);
      if (certificateFingerprint(verification.manifest.casCertificate) !== attested.certificateSha256) {
        throw new CasError('SNAPSHOT_INVALID', `snapshot ${newest.name} is signed by another CAS identity than the attested CAS "${target.name}"`);
      }
      renameSync(partialPath, finalPath);
      const manifest = verification.manifest;
      return {
        snapshot: newest.name,
        path: finalPath,
        createdAt: manifest.createdAt,
        ageSeconds: Math.max(0, Math.round((Date.now() - Date.parse(manifest.createdAt)) / 1000)),
        changeCounter: manifest.changeCounter,
        bytes,
        checks: [...verification.checks, 'signed by the attested CAS identity'],
      };
    } catch (error) {
      rmSync(partialPath, { recursive: true, force: true });
      throw error;
    }
  });
}

/** Downloads one file in ranges of at most the server's chunk size; returns its size in bytes. */
async function downloadFile(transport: TransportOptions, snapshot: string, file: string, path: string): Promise<number> {
  const descriptor = openSync(path, 'wx', 0o600);
  try {
    let offset = 0;
    for (;;) {
      const response = await sendRequest(transport, 'GET', `/v1/snapshots/${encodeURIComponent(snapshot)}/files/${encodeURIComponent(file)}?offset=${offset}`);
      const chunk = response.body as { size: number; offset: number; contentBase64: string };
      const data = Buffer.from(chunk.contentBase64, 'base64');
      if (chunk.offset !== offset || offset + data.length > chunk.size) {
        throw new CasError('CONNECTION_FAILED', `the CAS returned an unexpected range of ${snapshot}/${file} (offset ${chunk.offset}, ${data.length} bytes, expected offset ${offset})`);
      }
      writeSync(descriptor, data, 0, data.length, offset);
      offset += data.length;
      if (offset >= chunk.size) return offset;
      if (data.length === 0) throw new CasError('CONNECTION_FAILED', `the CAS returned no bytes of ${snapshot}/${file} at offset ${offset}`);
    }
  } finally {
    closeSync(descriptor);
  }
}
