import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Command } from 'commander';
import { AuditLog } from '../../audit/audit-log.js';
import type { AuditHead } from '../../audit/entry.js';
import { createAuditTestIdentity, makeTempDir, sampleEvents, type AuditTestIdentity } from '../../audit/test-support.js';
import { isCasError } from '../../errors/cas-error.js';
import { EXIT } from '../../errors/exit-codes.js';
import { silentLogger } from '../../logging/logger.js';
import { casCliPath } from '../../testing/paths.js';
import { registerAuditCommands } from './audit.js';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

let directory: string;
let identity: AuditTestIdentity;
let other: AuditTestIdentity;
let logPath: string;
let head: AuditHead;
let casCertFile: string;
let otherCertFile: string;

function runCas(args: string[]): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, CAS_HOME: join(directory, 'home') };
  delete env['CAS_URL'];
  return new Promise((resolve) => {
    execFile(process.execPath, [casCliPath(), ...args], { env, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Writes a variant of the sample log and returns its path. */
async function variant(name: string, transform: (lines: string[]) => string): Promise<string> {
  const lines = (await readFile(logPath, 'utf8')).slice(0, -1).split('\n');
  const path = join(directory, `${name}.log`);
  await writeFile(path, transform(lines));
  return path;
}

before(async () => {
  directory = await makeTempDir('cli');
  [identity, other] = await Promise.all([createAuditTestIdentity(), createAuditTestIdentity()]);
  logPath = join(directory, 'log', 'cas_audit.log');
  const log = await AuditLog.open({ path: logPath, signer: identity.signer, hmacKey: identity.hmacKey, logger: silentLogger() });
  for (const event of sampleEvents((value) => log.hmac(value))) await log.append(event);
  head = log.head();
  await log.close();

  await mkdir(join(directory, 'certs'));
  casCertFile = join(directory, 'certs', 'cas.pem');
  otherCertFile = join(directory, 'certs', 'other.pem');
  await writeFile(casCertFile, identity.casCertificatePem);
  await writeFile(otherCertFile, other.casCertificatePem);
});

after(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('cas audit verify', () => {
  test('intact log exits 0 and prints counts', async () => {
    const result = await runCas(['audit', 'verify', logPath, '--cas-cert', casCertFile, '--head', `${head.seq}:${head.hash}`]);
    assert.equal(result.code, EXIT.OK, result.stderr);
    assert.match(result.stdout, /^intact: 7 entries \(seq 1 to 7\) in 1 file/);
    assert.match(result.stdout, /cas\.started\s+1\n/);
    assert.match(result.stdout, /service\.attested\s+1\n/);
    assert.equal(result.stderr, '');
  });

  test('directory input exits 0', async () => {
    const result = await runCas(['audit', 'verify', join(directory, 'log')]);
    assert.equal(result.code, EXIT.OK, result.stderr);
  });

  test('json output is one document', async () => {
    const result = await runCas(['audit', 'verify', logPath, '--output', 'json']);
    assert.equal(result.code, EXIT.OK, result.stderr);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; counts: Record<string, number>; head: AuditHead };
    assert.equal(parsed.ok, true);
    assert.equal(parsed.counts['config.released'], 1);
    assert.deepEqual(parsed.head, head);
  });

  test('changed byte exits with AUDIT_INTEGRITY', async () => {
    const path = await variant('changed', (lines) => lines.map((line, i) => (i === 2 ? line.replace('team/app', 'team/apq') : line)).join('\n') + '\n');
    const result = await runCas(['audit', 'verify', path]);
    assert.equal(result.code, EXIT.AUDIT_INTEGRITY);
    assert.match(result.stderr, /changed\.log, line 3\)/);
    assert.match(result.stdout, /^NOT intact/);
  });

  test('json output on failure lists problems', async () => {
    const path = await variant('changed-json', (lines) => lines.map((line, i) => (i === 2 ? line.replace('team/app', 'team/apq') : line)).join('\n') + '\n');
    const result = await runCas(['audit', 'verify', path, '-o', 'json']);
    assert.equal(result.code, EXIT.AUDIT_INTEGRITY);
    const parsed = JSON.parse(result.stdout) as { ok: boolean; problems: Array<{ code: string; line: number }> };
    assert.equal(parsed.ok, false);
    assert.deepEqual(
      parsed.problems.map((problem) => [problem.code, problem.line]),
      [['AUDIT_INTEGRITY', 3]],
    );
  });

  test('other CAS certificate exits with AUDIT_WRONG_CAS', async () => {
    const result = await runCas(['audit', 'verify', logPath, '--cas-cert', otherCertFile]);
    assert.equal(result.code, EXIT.AUDIT_WRONG_CAS);
  });

  test('head ahead of the file exits with AUDIT_TRUNCATED', async () => {
    const path = await variant('truncated', (lines) => lines.slice(0, 5).join('\n') + '\n');
    const result = await runCas(['audit', 'verify', path, '--head', `${head.seq}:${head.hash}`]);
    assert.equal(result.code, EXIT.AUDIT_TRUNCATED);
    const withoutHead = await runCas(['audit', 'verify', path]);
    assert.equal(withoutHead.code, EXIT.OK, 'a prefix of a log is only detectably short given the head');
  });

  test('removed line exits with AUDIT_GAP', async () => {
    const path = await variant('gap', (lines) => lines.filter((_, i) => i !== 3).join('\n') + '\n');
    const result = await runCas(['audit', 'verify', path]);
    assert.equal(result.code, EXIT.AUDIT_GAP);
  });

  test('incomplete last line exits with AUDIT_PARTIAL_LINE', async () => {
    const path = await variant('partial', (lines) => lines.join('\n').slice(0, -30));
    const result = await runCas(['audit', 'verify', path]);
    assert.equal(result.code, EXIT.AUDIT_PARTIAL_LINE);
    assert.match(result.stderr, /incomplete/);
  });

  test('invalid head exits with usage error', async () => {
    const result = await runCas(['audit', 'verify', logPath, '--head', '7:xyz']);
    assert.equal(result.code, EXIT.USAGE);
    assert.match(result.stderr, /--head/);
  });

  test('--cas with --cas-cert exits with usage error', async () => {
    const result = await runCas(['audit', 'verify', logPath, '--cas', 'https://127.0.0.1:1', '--cas-cert', casCertFile]);
    assert.equal(result.code, EXIT.USAGE);
  });

  test('missing file exits 1', async () => {
    const result = await runCas(['audit', 'verify', join(directory, 'absent.log')]);
    assert.equal(result.code, EXIT.FAILURE);
    assert.match(result.stderr, /absent\.log does not exist/);
  });

  test('help lists the exit codes', async () => {
    const result = await runCas(['audit', 'verify', '--help']);
    assert.equal(result.code, EXIT.OK);
    assert.match(result.stdout, /30 integrity/);
    assert.match(result.stdout, /34 partial last line/);
  });
});

describe('registerAuditCommands', () => {
  test('--cas uses the fetched certificate and head', async () => {
    const requested: string[] = [];
    const program = new Command('cas').exitOverride();
    registerAuditCommands(program, {
      fetchAuditAnchor: async (url) => {
        requested.push(url);
        return { casCertificatePem: identity.casCertificatePem, head: { seq: head.seq + 1, hash: 'a'.repeat(64) } };
      },
    });
    await assert.rejects(
      program.parseAsync(['audit', 'verify', logPath, '--cas', 'https://127.0.0.1:8081'], { from: 'user' }),
      (error: unknown) => isCasError(error, 'AUDIT_TRUNCATED'),
    );
    assert.deepEqual(requested, ['https://127.0.0.1:8081']);
  });
});
