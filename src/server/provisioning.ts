import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEventInput, AuditHead } from '../audit/entry.js';
import { FILE_NAMES } from '../config/defaults.js';
import type { ServerSettings } from '../config/settings.js';
import { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';
import { writeFileAtomic, type CasDatabase } from '../store/index.js';
import type { ClientKey } from './client-identity.js';

const OWNER_META = 'cas.owner';
const TOKEN_HASH_META = 'cas.provisioning-token-sha256';
/** A deployer-supplied token must carry at least 128 bits if it is random base64: 22 characters. */
const MIN_TOKEN_LENGTH = 22;

export interface CasOwner {
  keyHash: string;
  provisionedAt: string;
}

/** Runs a state change: appends its audit entry, then commits `write` in one transaction with the audit head. */
export type CommitChange = <T>(entry: AuditEventInput, write: () => T) => Promise<{ result: T; head: AuditHead }>;

/**
 * The one-time provisioning of a CAS: the first client that presents the provisioning token becomes the CAS
 * owner; every later attempt gets ALREADY_PROVISIONED. The token is either supplied by the deployer
 * (`--provisioning-token-file`) or generated on first start and written to `<data-dir>/provisioning-token`
 * (mode 0600). The database keeps only the token's SHA-256; the generated file is removed once provisioned.
 * The log names the file, never the token.
 */
export class Provisioning {
  private readonly generatedTokenPath: string;
  /** The owner, after the first read that found one. Provisioning writes the owner once, and no code changes or deletes it. */
  private knownOwner: CasOwner | undefined;

  constructor(
    private readonly db: CasDatabase,
    private readonly settings: ServerSettings,
    private readonly logger: Logger,
  ) {
    this.generatedTokenPath = join(settings.dataDir, FILE_NAMES.provisioningToken);
  }

  /** Returns the CAS owner, or undefined before provisioning. Most requests check it, so the database is read only until it has one. */
  owner(): CasOwner | undefined {
    if (this.knownOwner !== undefined) return this.knownOwner;
    const stored = this.db.getMeta(OWNER_META);
    if (stored === undefined) return undefined;
    this.knownOwner = Object.freeze(JSON.parse(stored.toString('utf8')) as CasOwner);
    return this.knownOwner;
  }

  /** Prepares the token at start-up: checks a deployer's token file, or generates a token when none is pending. */
  async prepare(): Promise<void> {
    if (this.owner() !== undefined) {
      if (existsSync(this.generatedTokenPath)) rmSync(this.generatedTokenPath, { force: true });
      return;
    }
    if (this.settings.provisioningTokenFile !== undefined) {
      this.readDeployerToken();
      this.logger.info({ tokenFile: this.settings.provisioningTokenFile }, 'CAS is not provisioned; waiting for cas provision with the token from the deployer token file');
      return;
    }
    if (this.db.getMeta(TOKEN_HASH_META) === undefined || !existsSync(this.generatedTokenPath)) {
      const token = randomBytes(32).toString('base64url');
      await this.db.writeGate.run(() => this.db.putMeta(TOKEN_HASH_META, sha256(token)));
      writeFileAtomic(this.generatedTokenPath, Buffer.from(token + '\n', 'utf8'));
    }
    this.logger.info({ tokenFile: this.generatedTokenPath }, 'CAS is not provisioned; run cas provision with the token in this file');
  }

  /**
   * Makes the client the CAS owner if the token matches. The check and the commit run as one writer, so two
   * concurrent attempts cannot both succeed.
   */
  async provision(token: string, client: ClientKey, commit: CommitChange): Promise<CasOwner> {
    return this.db.writeGate.run(async () => {
      if (this.owner() !== undefined) {
        throw new CasError('ALREADY_PROVISIONED', 'this CAS is already provisioned; only the first cas provision succeeds');
      }
      const expected = this.settings.provisioningTokenFile !== undefined ? sha256(this.readDeployerToken()) : this.db.getMeta(TOKEN_HASH_META);
      if (expected === undefined || !timingSafeEqual(expected, sha256(token.trim()))) {
        throw new CasError('PROVISIONING_TOKEN_INVALID', `the provisioning token is wrong; use the token from ${this.settings.provisioningTokenFile ?? this.generatedTokenPath}`);
      }

      const owner: CasOwner = { keyHash: client.keyHash, provisionedAt: new Date().toISOString() };
      await commit({ event: 'cas.provisioned', actor: { kind: 'client', keyHash: client.keyHash }, outcome: 'success', details: {} }, () => {
        this.db.putMeta(OWNER_META, Buffer.from(JSON.stringify(owner), 'utf8'));
        this.db.deleteMeta(TOKEN_HASH_META);
      });
      rmSync(this.generatedTokenPath, { force: true });
      this.logger.info({ owner: owner.keyHash }, 'CAS provisioned');
      return owner;
    });
  }

  private readDeployerToken(): string {
    const path = this.settings.provisioningTokenFile!;
    if (!existsSync(path)) {
      throw new CasError('CONFIG_INVALID', `provisioningTokenFile (--provisioning-token-file): ${path} does not exist`);
    }
    if ((statSync(path).mode & 0o077) !== 0) {
      this.logger.warn({ tokenFile: path }, 'provisioning token file is readable by other users; restrict it to mode 0600');
    }
    const token = readFileSync(path, 'utf8').trim();
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new CasError('CONFIG_INVALID', `provisioningTokenFile (--provisioning-token-file): the token in ${path} has ${token.length} characters; use at least ${MIN_TOKEN_LENGTH} random characters`);
    }
    return token;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
