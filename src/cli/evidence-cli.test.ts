import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startPcs, stop } from '../attestation/collateral/test-support.js';
import { collateralKeyForQuote, parseCollateralFile } from '../attestation/index.js';
import { FILE_NAMES } from '../config/defaults.js';
import { runCas, startCasProcess, tempDir, type CasProcess } from '../server/testing/cas-process.js';
import { sharedDir } from '../testing/paths.js';

// The evidence flags of the built CLI against a real `cas serve` process. The recorded quotes cannot bind
// a live nonce, so these tests check which source the CLI used: what it wrote into the source's files,
// and which collateral the CAS then fetched from the loopback PCS-like server.

const samples = join(sharedDir(), 'attestation-samples/dcap-qvl/sample');
const tdxQuote = readFileSync(join(samples, 'tdx_quote'));
const sgxQuote = readFileSync(join(samples, 'sgx_quote'));

describe('cas config fetch and cas run evidence sources', () => {
  const root = tempDir('evidence-cli');
  const env = { CAS_HOME: join(root, 'home') };
  let pcs: Awaited<ReturnType<typeof startPcs>>;
  let cas: CasProcess;

  before(async () => {
    pcs = await startPcs(parseCollateralFile(readFileSync(join(samples, 'tdx_quote_collateral.json'), 'utf8')), collateralKeyForQuote(tdxQuote));
    const dataDir = join(root, 'data');
    cas = await startCasProcess({ args: ['--data-dir', dataDir, '--platform-dir', join(root, 'server-platform'), '--listen', '127.0.0.1:0', '--lease', 'none', '--no-metrics', '--pccs-url', pcs.baseUrl] });
    const token = readFileSync(join(dataDir, FILE_NAMES.provisioningToken), 'utf8').trim();
    for (const args of [
      ['provision', '--cas', cas.url, '--token', token],
      ['attest', '--cas', cas.url, '--accept-simulation'],
    ]) {
      const result = await runCas(args, env);
      assert.equal(result.code, 0, result.stderr);
    }
    const sessionFile = join(root, 'session.yaml');
    writeFileSync(sessionFile, 'name: dev\nversion: "0.3"\nservices:\n  - name: app\n    command: /bin/true\nsecurity:\n  attestation:\n    mode: none\n');
    const created = await runCas(['session', 'create', sessionFile, '--cas', cas.url], env);
    assert.equal(created.code, 0, created.stderr);
  });

  after(async () => {
    await cas?.stop();
    if (pcs !== undefined) await stop(pcs.server);
  });

  it('falls back to simulation and says so', async () => {
    const absent = join(root, 'absent');
    const result = await runCas(
      ['config', 'fetch', '--session', 'dev', '--service', 'app', '--cas', cas.url, '--platform-dir', join(root, 'service-platform'), '--configfs-tsm-path', absent, '--gramine-attestation-path', absent],
      env,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /no TEE evidence source found/);
    assert.equal((JSON.parse(result.stdout) as { service: string }).service, 'app');
  });

  it('config fetch sends the configfs-tsm quote', async () => {
    const base = join(root, 'tsm', 'report');
    mkdirSync(join(base, 'entry0'), { recursive: true });
    writeFileSync(join(base, 'entry0', 'provider'), 'tdx_guest\n');
    writeFileSync(join(base, 'entry0', 'outblob'), tdxQuote);
    const before = pcs.requests.length;
    const result = await runCas(
      ['config', 'fetch', '--session', 'dev', '--service', 'app', '--cas', cas.url, '--evidence-source', 'configfs-tsm', '--configfs-tsm-path', base, '--configfs-tsm-entry', 'entry0'],
      env,
    );
    // The collateral of 2025 has expired by now, so the CAS rejects the quote; it did verify a TDX quote.
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /expired collateral/);
    assert.equal(readFileSync(join(base, 'entry0', 'inblob')).length, 64);
    assert.ok(pcs.requests.slice(before).some((request) => request.url.startsWith('/tdx/certification/v4/tcb?fmspc=')));
  });

  it('cas run sends the Gramine quote', async () => {
    const gramine = join(root, 'gramine');
    mkdirSync(gramine, { recursive: true });
    writeFileSync(join(gramine, 'attestation_type'), 'dcap\n');
    writeFileSync(join(gramine, 'user_report_data'), '');
    writeFileSync(join(gramine, 'quote'), sgxQuote);
    const before = pcs.requests.length;
    const result = await runCas(['run', '--session', 'dev', '--service', 'app', '--cas', cas.url, '--gramine-attestation-path', gramine, '--configfs-tsm-path', join(root, 'absent')], env);
    // The PCS-like server has only the TDX sample's collateral, so the SGX TCB Info is not found.
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /sgx\/certification\/v4\/tcb\?fmspc=.* failed with HTTP 404/);
    assert.equal(readFileSync(join(gramine, 'user_report_data')).length, 64);
    assert.ok(pcs.requests.slice(before).some((request) => request.url.startsWith('/sgx/certification/v4/tcb?fmspc=')));
  });

  it('rejects an unknown --evidence-source', async () => {
    const result = await runCas(['config', 'fetch', '--session', 'dev', '--service', 'app', '--cas', cas.url, '--evidence-source', 'tpm'], env);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--evidence-source must be one of auto, configfs-tsm, gramine, simulation, not "tpm"/);
  });
});
