import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { casCliPath, sharedDir } from '../../testing/paths.js';

const samples = join(sharedDir(), 'attestation-samples');
const sample = (path: string): string => join(samples, path);
const AT = '1751328000';

function cas(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [casCliPath(), ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('cas quote verify', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cas-quote-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help describes the flags', () => {
    const result = cas('quote', 'verify', '--help');
    assert.equal(result.status, 0);
    for (const flag of ['--collateral', '--root-ca', '--at', '--output']) assert.match(result.stdout, new RegExp(flag));
  });

  it('verifies the SGX sample and prints status and measurements', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/sgx_quote'), '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--at', AT);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /TEE type:\s+sgx/);
    assert.match(result.stdout, /TCB status:\s+ConfigurationAndSWHardeningNeeded/);
    assert.match(result.stdout, /advisory ids:\s+INTEL-SA-00289, INTEL-SA-00615/);
    assert.match(result.stdout, /mrenclave:\s+33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb/);
  });

  it('verifies the padded TDX sample as JSON with the sample root CA', () => {
    const result = cas(
      'quote', 'verify', sample('dcap-qvl/sample/tdx_quote'),
      '--collateral', sample('dcap-qvl/sample/tdx_quote_collateral.json'),
      '--root-ca', sample('derived/IntelSGXRootCA.pem'),
      '--at', AT, '--output', 'json',
    );
    assert.equal(result.status, 0, result.stderr);
    const json = JSON.parse(result.stdout) as { valid: boolean; teeType: string; tcbStatus: string; advisoryIds: string[]; measurements: Record<string, unknown> };
    assert.equal(json.valid, true);
    assert.equal(json.teeType, 'tdx');
    assert.equal(json.tcbStatus, 'UpToDate');
    assert.deepEqual(json.advisoryIds, []);
    assert.equal(json.measurements['mrtd'], '91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7');
  });

  it('accepts hex without the 0x prefix', () => {
    const hex = join(dir, 'sgx.hex');
    writeFileSync(hex, readFileSync(sample('dcap-qvl/sample/sgx_quote')).toString('hex') + '\n');
    const result = cas('quote', 'verify', hex, '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--at', AT);
    assert.equal(result.status, 0, result.stderr);
  });

  it('fails the 0x-hex TDX quote that matches no TCB level', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/tdx-quote.hex'), '--collateral', sample('dcap-qvl/sample/tdx_quote_collateral.json'), '--at', AT);
    assert.notEqual(result.status, 0);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^error: no TCB level of the TCB Info for FMSPC B0C06F000000 matches the platform/);
  });

  it('fails a tampered quote', () => {
    const tampered = join(dir, 'tampered');
    const bytes = readFileSync(sample('dcap-qvl/sample/sgx_quote'));
    bytes[48 + 64] = bytes[48 + 64]! ^ 1;
    writeFileSync(tampered, bytes);
    const result = cas('quote', 'verify', tampered, '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--at', AT);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /quote signature does not verify/);
  });

  it('fails expired collateral and names the item', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/sgx_quote'), '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--at', '1790000000');
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /expired at/);
  });

  it('fails with a wrong root CA', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/sgx_quote'), '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--root-ca', sample('go-sev-guest/verify/testdata/milan.testcer'), '--at', AT);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /not the trusted root/);
  });

  it('requires --collateral for Intel quotes', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/sgx_quote'));
    assert.equal(result.status, 2);
    assert.match(result.stderr, /needs --collateral/);
  });

  it('rejects an invalid --at', () => {
    const result = cas('quote', 'verify', sample('dcap-qvl/sample/sgx_quote'), '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'), '--at', 'yesterday');
    assert.equal(result.status, 2);
    assert.match(result.stderr, /invalid --at/);
  });

  it('verifies the SEV-SNP sample with its VCEK, ASK and ARK', () => {
    const [ask, ark] = readFileSync(sample('go-sev-guest/verify/testdata/milan.testcer'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    writeFileSync(join(dir, 'ask.pem'), ask!);
    writeFileSync(join(dir, 'ark.pem'), ark!);
    const result = cas(
      'quote', 'verify', sample('go-sev-guest/verify/testdata/attestation.bin'),
      '--vcek', sample('go-sev-guest/verify/testdata/vcek.testcer'),
      '--ask', join(dir, 'ask.pem'), '--ark', join(dir, 'ark.pem'),
      '--at', AT, '--output', 'json',
    );
    assert.equal(result.status, 0, result.stderr);
    const json = JSON.parse(result.stdout) as { teeType: string; measurements: { measurement: string } };
    assert.equal(json.teeType, 'snp');
    assert.equal(json.measurements.measurement, 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01');
  });

  it('rejects a file that is no evidence', () => {
    const junk = join(dir, 'junk');
    writeFileSync(junk, 'not a quote');
    const result = cas('quote', 'verify', junk, '--collateral', sample('dcap-qvl/sample/sgx_quote_collateral.json'));
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /neither an Intel DCAP quote/);
  });
});
