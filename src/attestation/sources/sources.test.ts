import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCasError } from '../../errors/cas-error.js';
import { sharedDir } from '../../testing/paths.js';
import { ConfigfsTsmSource } from './configfs-tsm.js';
import { detectEvidenceSource } from './detect.js';
import { GramineSource } from './gramine.js';

const samples = join(sharedDir(), 'attestation-samples');
const tdxQuote = readFileSync(join(samples, 'dcap-qvl/sample/tdx_quote'));
const sgxQuote = readFileSync(join(samples, 'dcap-qvl/sample/sgx_quote'));
const snpReport = readFileSync(join(samples, 'go-sev-guest/verify/testdata/attestation.bin'));
const reportData = Buffer.alloc(64, 0x42);

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'cas-sources-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** Lays out a configfs-tsm entry as the kernel would after a report request: provider and outblob. */
function tsmEntry(base: string, name: string, provider: string, outblob: Buffer): string {
  const entry = join(base, name);
  mkdirSync(entry, { recursive: true });
  writeFileSync(join(entry, 'provider'), provider + '\n');
  writeFileSync(join(entry, 'outblob'), outblob);
  return entry;
}

describe('ConfigfsTsmSource', () => {
  it('collects a TDX quote from an existing entry', async () => {
    const base = join(root, 'tsm/report');
    const entry = tsmEntry(base, 'entry0', 'tdx_guest', tdxQuote);
    const collected = await new ConfigfsTsmSource({ basePath: base, entryName: 'entry0' }).collect(reportData);
    assert.equal(collected.teeType, 'tdx');
    assert.deepEqual(collected.evidence, tdxQuote);
    assert.deepEqual(readFileSync(join(entry, 'inblob')), reportData);
  });

  it('collects an SEV-SNP report with its auxiliary blob', async () => {
    const base = join(root, 'tsm/report');
    const entry = tsmEntry(base, 'entry0', 'sev_guest', snpReport);
    writeFileSync(join(entry, 'auxblob'), Buffer.from('certificate table'));
    const collected = await new ConfigfsTsmSource({ basePath: base, entryName: 'entry0' }).collect(reportData);
    assert.equal(collected.teeType, 'snp');
    assert.deepEqual(collected.evidence, snpReport);
    assert.equal(collected.auxiliary?.toString(), 'certificate table');
  });

  it('creates its own entry and writes the report data there', async () => {
    const base = join(root, 'tsm/report');
    mkdirSync(base, { recursive: true });
    // A plain directory has no kernel behind it, so outblob is missing: the request fails after inblob.
    await assert.rejects(new ConfigfsTsmSource({ basePath: base }).collect(reportData), (error) => isCasError(error, 'UNAVAILABLE') && /outblob/.test(error.message));
    const [created] = readdirSync(base);
    assert.match(created!, /^cas-\d+-[0-9a-f]{12}$/);
    assert.deepEqual(readFileSync(join(base, created!, 'inblob')), reportData);
  });

  it('rejects a generation that does not advance by one write', async () => {
    const base = join(root, 'tsm/report');
    const entry = tsmEntry(base, 'entry0', 'tdx_guest', tdxQuote);
    writeFileSync(join(entry, 'generation'), '7\n');
    await assert.rejects(new ConfigfsTsmSource({ basePath: base, entryName: 'entry0' }).collect(reportData), (error) => isCasError(error, 'UNAVAILABLE') && /another process/.test(error.message));
  });

  it('rejects an unknown provider', async () => {
    const base = join(root, 'tsm/report');
    tsmEntry(base, 'entry0', 'arm_cca_guest', tdxQuote);
    await assert.rejects(new ConfigfsTsmSource({ basePath: base, entryName: 'entry0' }).collect(reportData), (error) => isCasError(error, 'UNAVAILABLE') && /arm_cca_guest/.test(error.message));
  });

  it('rejects report data that is not 64 bytes', async () => {
    await assert.rejects(new ConfigfsTsmSource({ basePath: root }).collect(Buffer.alloc(32)), (error) => isCasError(error, 'INVALID_ARGUMENT'));
  });
});

describe('GramineSource', () => {
  function gramineDir(type: string | undefined): string {
    const dir = join(root, 'dev/attestation');
    mkdirSync(dir, { recursive: true });
    if (type !== undefined) writeFileSync(join(dir, 'attestation_type'), type);
    writeFileSync(join(dir, 'user_report_data'), Buffer.alloc(64));
    writeFileSync(join(dir, 'quote'), sgxQuote);
    return dir;
  }

  it('writes the report data and reads the quote', async () => {
    const dir = gramineDir('dcap');
    const collected = await new GramineSource(dir).collect(reportData);
    assert.equal(collected.teeType, 'sgx');
    assert.deepEqual(collected.evidence, sgxQuote);
    assert.deepEqual(readFileSync(join(dir, 'user_report_data')), reportData);
  });

  it('rejects a non-DCAP attestation type', async () => {
    const dir = gramineDir('epid');
    await assert.rejects(new GramineSource(dir).collect(reportData), (error) => isCasError(error, 'UNAVAILABLE') && /"epid"/.test(error.message));
  });
});

describe('detectEvidenceSource', () => {
  it('prefers Gramine when it offers DCAP quotes', async () => {
    const gramine = join(root, 'dev/attestation');
    mkdirSync(gramine, { recursive: true });
    writeFileSync(join(gramine, 'attestation_type'), 'dcap\n');
    writeFileSync(join(gramine, 'user_report_data'), '');
    writeFileSync(join(gramine, 'quote'), sgxQuote);
    mkdirSync(join(root, 'tsm/report'), { recursive: true });
    const source = await detectEvidenceSource({ gramineAttestationPath: gramine, configfsTsmPath: join(root, 'tsm/report') });
    assert.equal(source?.kind, 'gramine');
  });

  it('falls back to configfs-tsm', async () => {
    mkdirSync(join(root, 'tsm/report'), { recursive: true });
    const source = await detectEvidenceSource({ gramineAttestationPath: join(root, 'missing'), configfsTsmPath: join(root, 'tsm/report') });
    assert.equal(source?.kind, 'configfs-tsm');
  });

  it('skips Gramine without DCAP', async () => {
    const gramine = join(root, 'dev/attestation');
    mkdirSync(gramine, { recursive: true });
    writeFileSync(join(gramine, 'attestation_type'), 'none\n');
    writeFileSync(join(gramine, 'user_report_data'), '');
    writeFileSync(join(gramine, 'quote'), '');
    assert.equal(await detectEvidenceSource({ gramineAttestationPath: gramine, configfsTsmPath: join(root, 'missing') }), undefined);
  });

  it('returns undefined when neither exists', async () => {
    assert.equal(await detectEvidenceSource({ gramineAttestationPath: join(root, 'a'), configfsTsmPath: join(root, 'b') }), undefined);
  });
});
