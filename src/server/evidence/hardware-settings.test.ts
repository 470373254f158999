import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { HEALTH_PATHS } from '../../config/defaults.js';
import { loadServerSettings } from '../../config/settings.js';
import { isCasError } from '../../errors/cas-error.js';
import { createLogger, silentLogger } from '../../logging/logger.js';
import { sharedDir } from '../../testing/paths.js';
import { startCasProcess, tempDir } from '../testing/cas-process.js';
import { rawRequest } from '../testing/in-process.js';
import { amdProductOfArk, createHardwareEvidenceVerifier } from './hardware.js';

// Configuration of the hardware evidence verifier: `cas serve` flags, settings and trust anchor files.

const milanChain = readFileSync(join(sharedDir(), 'attestation-samples/go-sev-guest/verify/testdata/milan.testcer'), 'utf8');
const [askPem, arkPem] = milanChain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
const KEY = 'test-dcap-key-5e1d0c7a93b2f846';

describe('hardware verifier settings', () => {
  it('rejects --pcs-url together with --pccs-url', async () => {
    const settings = { dataDir: tempDir('hw-settings'), pcsUrl: 'https://pcs.example', pccsUrl: 'https://pccs.example' };
    await assert.rejects(createHardwareEvidenceVerifier({ settings, logger: silentLogger() }), (error) => isCasError(error, 'CONFIG_INVALID') && /either --pcs-url or --pccs-url/.test(error.message));
  });

  it('names the flag of an invalid URL', () => {
    assert.throws(() => loadServerSettings({ pccsUrl: 'ftp://pccs' }), (error) => isCasError(error, 'CONFIG_INVALID') && /pccsUrl \(--pccs-url\): expected an http:\/\/ or https:\/\/ URL/.test(error.message));
  });

  it('resolves the anchor and key files to absolute paths', () => {
    const settings = loadServerSettings({ dataDir: '/var/lib/cas', amdArkFile: 'ark.pem', dcapApiKeyFile: 'key', intelRootCaFile: 'root.pem' }, '/etc/cas');
    assert.equal(settings.amdArkFile, '/etc/cas/ark.pem');
    assert.equal(settings.dcapApiKeyFile, '/etc/cas/key');
    assert.equal(settings.intelRootCaFile, '/etc/cas/root.pem');
  });

  it('rejects a missing or empty DCAP key file', async () => {
    const dir = tempDir('hw-settings');
    await assert.rejects(createHardwareEvidenceVerifier({ settings: { dataDir: dir, dcapApiKeyFile: join(dir, 'absent') }, logger: silentLogger() }), (error) => isCasError(error, 'CONFIG_INVALID') && /ENOENT/.test(error.message));
    writeFileSync(join(dir, 'empty'), '\n');
    await assert.rejects(createHardwareEvidenceVerifier({ settings: { dataDir: dir, dcapApiKeyFile: join(dir, 'empty') }, logger: silentLogger() }), (error) => isCasError(error, 'CONFIG_INVALID') && /is empty/.test(error.message));
  });

  it('takes the product line from the ARK and rejects an ASK as ARK', () => {
    assert.equal(amdProductOfArk(arkPem!, 'ark.pem'), 'Milan');
    assert.throws(() => amdProductOfArk(askPem!, 'ask.pem'), (error) => isCasError(error, 'CONFIG_INVALID') && /not an AMD ARK/.test(error.message));
  });

  it('reads the key from CAS_DCAP_API_KEY and never logs it', async () => {
    const lines: string[] = [];
    const destination = new PassThrough();
    destination.on('data', (chunk: Buffer) => lines.push(chunk.toString('utf8')));
    await createHardwareEvidenceVerifier({ settings: { dataDir: tempDir('hw-settings') }, logger: createLogger({ level: 'trace', destination }), env: { CAS_DCAP_API_KEY: KEY } });
    const text = lines.join('');
    assert.match(text, /"dcapApiKeyConfigured":true/);
    assert.equal(text.includes(KEY), false);
  });
});

describe('cas serve with hardware verifier flags', () => {
  it('starts with --pccs-url, --amd-ark and the key from the environment', async () => {
    const root = tempDir('hw-serve');
    const arkFile = join(root, 'ark.pem');
    writeFileSync(arkFile, arkPem!);
    const cas = await startCasProcess({
      args: ['--listen', '127.0.0.1:0', '--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--lease', 'none', '--no-snapshots', '--no-metrics', '--pccs-url', 'http://127.0.0.1:9/pccs', '--amd-ark', arkFile],
      env: { CAS_DCAP_API_KEY: KEY },
    });
    try {
      const configured = cas.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line['msg'] === 'hardware evidence verification configured');
      assert.deepEqual(configured?.['intelCollateral'], { pccs: 'http://127.0.0.1:9/pccs' });
      assert.equal(configured?.['amdProduct'], 'Milan');
      assert.equal(configured?.['dcapApiKeyConfigured'], true);
      assert.equal(cas.logLines.join('\n').includes(KEY), false);
      // A request first: `cas serve` installs its SIGTERM handler just after it logs "CAS listening".
      assert.equal((await rawRequest(new URL(cas.url), { method: 'GET', path: HEALTH_PATHS.readiness })).status, 200);
    } finally {
      assert.equal(await cas.stop(), 0);
    }
  });
});
