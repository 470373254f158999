import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { silentLogger } from '../logging/logger.js';
import { AuditLog } from './audit-log.js';
import { loadAuditTestIdentity } from './test-support.js';

/**
 * A child process for the crash test: appends entries with many concurrent appends until it is killed, and
 * writes `ack <seq>` on stdout for every append that resolved, that is, whose line was fsynced.
 * Usage: node test-writer-process.js IDENTITY_JSON LOG_PATH [MAX_FILE_BYTES]
 */
const [identityFile, logPath, maxFileBytes] = process.argv.slice(2);
if (identityFile === undefined || logPath === undefined) {
  process.stderr.write('usage: test-writer-process.js IDENTITY_JSON LOG_PATH [MAX_FILE_BYTES]\n');
  process.exit(2);
}

const identity = loadAuditTestIdentity(readFileSync(identityFile, 'utf8'));
const log = await AuditLog.open({
  path: logPath,
  signer: identity.signer,
  hmacKey: identity.hmacKey,
  logger: silentLogger(),
  ...(maxFileBytes === undefined ? {} : { maxFileBytes: Number(maxFileBytes) }),
});

const CONCURRENCY = 128;
let counter = 0;

async function appendForever(): Promise<void> {
  for (;;) {
    counter++;
    const head = await log.append({
      event: 'session.read',
      actor: { kind: 'client', keyHash: 'd'.repeat(64) },
      target: { session: `load/session-${counter % 97}` },
      outcome: 'success',
      details: {},
    });
    process.stdout.write(`ack ${head.seq}\n`);
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: CONCURRENCY }, () => appendForever()));
