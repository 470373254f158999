import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FILE_NAMES } from '../config/defaults.js';
import { casCliPath } from '../testing/paths.js';
import { startCasProcess, runCas, tempDir, type CasProcess } from './testing/cas-process.js';

/**
 * The built `cas` CLI against a real `cas serve` process on a loopback port: provisioning, attestation,
 * session life cycle, configuration delivery, `cas run`, access control, and a scan of every file the
 * server wrote for generated secret values.
 */

function sessionText(name: string, injectionDir: string, workDir: string, extraEnvironment = ''): string {
  const program = 'console.log(JSON.stringify({argv: process.argv.slice(1), env: process.env}))';
  return `name: ${name}
version: "0.3"
services:
  - name: printer
    image_name: printer_image
    command: '${process.execPath} -e "${program}" @@1'
    pwd: ${workDir}
    environment:
      DB_PASSWORD: $$SCONE::db_password$$
      API_KEY_HEX: $$SCONE::api_key:hex$$
      \\@\\@HOST_VALUE: ""${extraEnvironment}
  - name: bare
    pwd: ${workDir}
    environment:
      DB_PASSWORD: $$SCONE::db_password$$
images:
  - name: printer_image
    injection_files:
      - path: ${injectionDir}/nested/dir/secret.conf
        content: "password=$$SCONE::db_password$$"
secrets:
  - name: db_password
    kind: ascii
    size: 24
  - name: api_key
    kind: binary
    size: 16
security:
  attestation:
    mode: none
`;
}

/** Lists every regular file below `dir`, recursively. */
function filesBelow(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesBelow(path));
    else if (entry.isFile()) found.push(path);
  }
  return found;
}

describe('cas CLI against cas serve', () => {
  const root = tempDir('e2e');
  const dataDir = join(root, 'data');
  const serverPlatformDir = join(root, 'server-platform');
  const servicePlatformDir = join(root, 'service-platform');
  const injectionDir = join(root, 'injected');
  const workDir = join(root, 'work');
  const ownerEnv = { CAS_HOME: join(root, 'owner-home') };
  const otherEnv = { CAS_HOME: join(root, 'other-home') };
  const sessionFile = join(root, 'session.yaml');
  let cas: CasProcess;
  let token = '';
  let firstHash = '';
  let firstPassword = '';
  let apiKeyHex = '';

  before(async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(workDir, { recursive: true });
    writeFileSync(sessionFile, sessionText('e2e/app', injectionDir, workDir).replace('name: e2e/app', 'name: e2e-app'));
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', serverPlatformDir, '--listen', '127.0.0.1:0'] });
  });

  after(async () => {
    await cas?.stop();
  });

  it('writes the provisioning token file with mode 0600', () => {
    const path = join(dataDir, FILE_NAMES.provisioningToken);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    token = readFileSync(path, 'utf8').trim();
    assert.ok(token.length >= 22);
    assert.ok(!cas.logLines.some((line) => line.includes(token)), 'the token must not appear in the log');
  });

  it('rejects client commands before the CAS is pinned', async () => {
    const result = await runCas(['session', 'list', '--cas', cas.url], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /no pinned certificate/);
    assert.match(result.stderr, new RegExp(`cas attest --cas ${cas.url.replace(/[.]/g, '\\.')}`));
  });

  it('provisions the owner once', async () => {
    const first = await runCas(['provision', '--cas', cas.url, '--token', token], ownerEnv);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout.trim(), /^[0-9a-f]{64}$/);
    assert.equal(statSync(join(ownerEnv.CAS_HOME, 'client-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(ownerEnv.CAS_HOME).mode & 0o777, 0o700);
    assert.ok(!existsSync(join(dataDir, FILE_NAMES.provisioningToken)), 'the token file is removed after provisioning');

    const second = await runCas(['provision', '--cas', cas.url, '--token', token], otherEnv);
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, /already provisioned/);
  });

  it('refuses a simulated CAS without --accept-simulation', async () => {
    const result = await runCas(['attest', '--cas', cas.url], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /simulation mode/);
    assert.match(result.stderr, /--accept-simulation/);
  });

  it('pins the CAS certificate with --accept-simulation', async () => {
    for (const env of [ownerEnv, otherEnv]) {
      const result = await runCas(['attest', '--cas', cas.url, '--accept-simulation'], env);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout.trim(), /^[0-9a-f]{64}$/);
      assert.match(result.stderr, /SIMULATED/);
    }
  });

  it('creates a session and prints its hash', async () => {
    const result = await runCas(['session', 'create', sessionFile, '--cas', cas.url], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    firstHash = result.stdout.trim();
    assert.match(firstHash, /^[0-9a-f]{64}$/);
  });

  it('substitutes only the -e variables', async () => {
    const templated = join(root, 'templated.yaml');
    writeFileSync(templated, sessionText('${APP}', injectionDir, workDir).replace('DB_PASSWORD: $$SCONE::db_password$$', () => 'DB_PASSWORD: $$SCONE::db_password$$\n      UNSET: $OTHER'));
    const result = await runCas(['session', 'create', templated, '-e', 'APP=e2e-templated', '--cas', cas.url, '--output', 'json'], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as { name: string }).name, 'e2e-templated');

    const fetched = await runCas(['config', 'fetch', '--session', 'e2e-templated', '--service', 'printer', '--cas', cas.url, '--platform-dir', servicePlatformDir, 'x'], ownerEnv);
    assert.equal(fetched.code, 0, fetched.stderr);
    const environment = (JSON.parse(fetched.stdout) as { environment: Record<string, string> }).environment;
    assert.equal(environment['UNSET'], '$OTHER');
    assert.match(environment['DB_PASSWORD']!, /^[A-Za-z0-9]{24}$/);
  });

  it('fetches the configuration with generated secrets', async () => {
    const result = await runCas(
      ['config', 'fetch', '--session', 'e2e-app', '--service', 'printer', '--cas', cas.url, '--platform-dir', servicePlatformDir, 'first-arg'],
      ownerEnv,
    );
    assert.equal(result.code, 0, result.stderr);
    const configuration = JSON.parse(result.stdout) as { environment: Record<string, string>; command: string[]; injectionFiles: Array<{ content: string }> };
    firstPassword = configuration.environment['DB_PASSWORD']!;
    apiKeyHex = configuration.environment['API_KEY_HEX']!;
    assert.match(firstPassword, /^[A-Za-z0-9]{24}$/);
    assert.match(apiKeyHex, /^[0-9a-f]{32}$/);
    assert.equal(configuration.command.at(-1), 'first-arg');
    assert.equal(configuration.injectionFiles[0]!.content, `password=${firstPassword}`);
  });

  it('updates a session and keeps its generated secrets', async () => {
    writeFileSync(sessionFile, sessionText('e2e-app', injectionDir, workDir, '\n      PLAIN: "added"'));
    const result = await runCas(['session', 'update', sessionFile, '--cas', cas.url], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    const secondHash = result.stdout.trim();
    assert.match(secondHash, /^[0-9a-f]{64}$/);
    assert.notEqual(secondHash, firstHash);

    const fetched = await runCas(['config', 'fetch', '--session', 'e2e-app', '--service', 'printer', '--cas', cas.url, '--platform-dir', servicePlatformDir, 'x'], ownerEnv);
    assert.equal(fetched.code, 0, fetched.stderr);
    const configuration = JSON.parse(fetched.stdout) as { environment: Record<string, string> };
    assert.equal(configuration.environment['DB_PASSWORD'], firstPassword);
    assert.equal(configuration.environment['API_KEY_HEX'], apiKeyHex);
    assert.equal(configuration.environment['PLAIN'], 'added');
  });

  it('rejects an update with a stale predecessor', async () => {
    const stale = join(root, 'stale.yaml');
    writeFileSync(stale, `predecessor: ${firstHash}\n` + sessionText('e2e-app', injectionDir, workDir));
    const result = await runCas(['session', 'update', stale, '--cas', cas.url], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /changed since this update was prepared/);
  });

  it('rejects a create with a predecessor', async () => {
    const withPredecessor = join(root, 'with-predecessor.yaml');
    writeFileSync(withPredecessor, `predecessor: ${firstHash}\n` + sessionText('e2e-new', injectionDir, workDir).replace('name: e2e-app', 'name: e2e-new'));
    const result = await runCas(['session', 'create', withPredecessor, '--cas', cas.url], ownerEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /must not have one/);
  });

  it('rejects a read by another identity', async () => {
    const result = await runCas(['session', 'read', 'e2e-app', '--cas', cas.url], otherEnv);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /may not read session "e2e-app"/);

    const list = await runCas(['session', 'list', '--cas', cas.url, '--output', 'json'], otherEnv);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), { sessions: [] });
  });

  it('reads and lists the session for its owner without secret values', async () => {
    const read = await runCas(['session', 'read', 'e2e-app', '--cas', cas.url, '--output', 'json'], ownerEnv);
    assert.equal(read.code, 0, read.stderr);
    const view = JSON.parse(read.stdout) as { name: string; session: string; predecessor: string };
    assert.equal(view.name, 'e2e-app');
    assert.equal(view.predecessor, firstHash);
    assert.ok(!read.stdout.includes(firstPassword));

    const list = await runCas(['session', 'list', '--cas', cas.url], ownerEnv);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^e2e-app\t[0-9a-f]{64}$/m);
  });

  it('runs the service command with exactly the configured environment', async () => {
    const result = await runCas(
      ['run', '--session', 'e2e-app', '--service', 'printer', '--cas', cas.url, '--platform-dir', servicePlatformDir, '--', 'host argument'],
      { ...ownerEnv, HOST_VALUE: 'from the host', UNRELATED: 'must not leak' },
    );
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout) as { argv: string[]; env: Record<string, string> };
    assert.deepEqual(printed.argv, ['host argument']);
    assert.deepEqual(Object.keys(printed.env).sort(), ['API_KEY_HEX', 'DB_PASSWORD', 'HOST_VALUE', 'PLAIN']);
    assert.equal(printed.env['DB_PASSWORD'], firstPassword);
    assert.equal(printed.env['HOST_VALUE'], 'from the host');

    const injected = join(injectionDir, 'nested', 'dir', 'secret.conf');
    assert.equal(statSync(injected).mode & 0o777, 0o600);
    assert.equal(readFileSync(injected, 'utf8'), `password=${firstPassword}`);
  });

  it('runs the host command without session command', async () => {
    const result = await runCas(
      ['run', '--session', 'e2e-app', '--service', 'bare', '--cas', cas.url, '--platform-dir', servicePlatformDir, '--', process.execPath, '-e', 'process.exit(process.env.DB_PASSWORD.length === 24 ? 7 : 1)'],
      ownerEnv,
    );
    assert.equal(result.code, 7, result.stderr);
  });

  it('forwards SIGTERM to the service', async () => {
    const program = "process.on('SIGTERM', () => process.exit(42)); console.log('ready'); setInterval(() => {}, 1000);";
    const child = spawn(
      process.execPath,
      [casCliPath(), 'run', '--session', 'e2e-app', '--service', 'bare', '--cas', cas.url, '--platform-dir', servicePlatformDir, '--', process.execPath, '-e', program],
      { env: { ...process.env, ...ownerEnv }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString('utf8').includes('ready')) resolve();
      });
      void exited.then((code) => reject(new Error(`cas run exited with ${code} before the service started: ${stderr}`)));
    });
    child.kill('SIGTERM');
    assert.equal(await exited, 42, stderr);
  });

  it('deletes the session', async () => {
    const result = await runCas(['session', 'delete', 'e2e-app', '--cas', cas.url], ownerEnv);
    assert.equal(result.code, 0, result.stderr);
    const read = await runCas(['session', 'read', 'e2e-app', '--cas', cas.url], ownerEnv);
    assert.notEqual(read.code, 0);
    assert.match(read.stderr, /does not exist/);
  });

  it('logs request id and session name', () => {
    const entries = cas.logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const created = entries.find((entry) => entry['msg'] === 'session created' && entry['session'] === 'e2e-app');
    assert.ok(created !== undefined, 'no "session created" line for e2e-app');
    assert.match(String(created['requestId']), /^[0-9a-f-]{36}$/);
    const rejected = entries.find((entry) => entry['msg'] === 'request rejected' && entry['code'] === 'PERMISSION_DENIED');
    assert.ok(rejected !== undefined, 'no "request rejected" line for the read by another identity');
    assert.equal(rejected['session'], 'e2e-app');
    assert.match(String(rejected['requestId']), /^[0-9a-f-]{36}$/);
  });

  it('stops on SIGTERM with exit code 0', async () => {
    const code = await cas.stop();
    assert.equal(code, 0, cas.stderr());
    assert.ok(cas.logLines.some((line) => line.includes('"msg":"CAS stopped"')));
  });

  it('leaves no generated secret in any file or log line', () => {
    const needles = [
      Buffer.from(firstPassword, 'utf8'),
      Buffer.from(apiKeyHex, 'utf8'),
      Buffer.from(apiKeyHex, 'hex'),
      Buffer.from(Buffer.from(apiKeyHex, 'hex').toString('base64'), 'utf8'),
    ];
    assert.ok(firstPassword.length > 0, 'the earlier tests must have fetched the password');
    assert.ok(apiKeyHex.length > 0, 'the earlier tests must have fetched the API key');
    const files = [...filesBelow(dataDir), ...filesBelow(serverPlatformDir), ...filesBelow(servicePlatformDir)];
    assert.ok(files.length >= 4, `expected database, key store, audit log and platform keys, found ${files.join(', ')}`);
    for (const file of files) {
      const content = readFileSync(file);
      for (const needle of needles) assert.equal(content.indexOf(needle), -1, `${file} contains a generated secret`);
    }
    const log = cas.logLines.join('\n') + cas.stderr();
    assert.ok(!log.includes(firstPassword), 'the server log contains a generated secret');
    assert.ok(!log.includes(apiKeyHex), 'the server log contains a generated secret');
  });
});
