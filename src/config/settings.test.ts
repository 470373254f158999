import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CasError } from '../errors/cas-error.js';
import { DEFAULTS } from './defaults.js';
import { loadServerSettings, parseListenAddress } from './settings.js';

function invalid(input: Parameters<typeof loadServerSettings>[0]): CasError {
  try {
    loadServerSettings(input, '/work');
  } catch (error) {
    assert.ok(error instanceof CasError);
    assert.equal(error.code, 'CONFIG_INVALID');
    return error;
  }
  assert.fail('expected CONFIG_INVALID');
}

describe('loadServerSettings', () => {
  it('fills in the embedded defaults', () => {
    const settings = loadServerSettings({}, '/work');
    assert.equal(settings.dataDir, '/work/cas-data');
    assert.deepEqual(settings.listen, { host: DEFAULTS.listenHost, port: DEFAULTS.listenPort });
    assert.equal(settings.mode, 'simulation');
    assert.equal(settings.snapshotIntervalSeconds, 60);
    assert.equal(settings.snapshotDir, '/work/cas-data/snapshots');
    assert.equal(settings.snapshotsEnabled, true);
    assert.equal(settings.auditLog, '/work/cas-data/audit/cas_audit.log');
  });

  it('derives snapshot and audit paths from --data-dir', () => {
    const settings = loadServerSettings({ dataDir: '/srv/cas' }, '/work');
    assert.equal(settings.snapshotDir, '/srv/cas/snapshots');
    assert.equal(settings.auditLog, '/srv/cas/audit/cas_audit.log');
  });

  it('names an invalid mode by key and flag', () => {
    assert.match(invalid({ mode: 'sgx' }).message, /mode \(--mode\)/);
  });

  it('names an invalid listen address', () => {
    assert.match(invalid({ listen: 'localhost' }).message, /listen \(--listen\).*HOST:PORT/);
    assert.match(invalid({ listen: '127.0.0.1:70000' }).message, /listen/);
  });

  it('names an invalid snapshot interval', () => {
    assert.match(invalid({ snapshotIntervalSeconds: '0' }).message, /snapshotIntervalSeconds \(--snapshot-interval\)/);
    assert.match(invalid({ snapshotIntervalSeconds: 'ten' }).message, /--snapshot-interval/);
  });

  it('lists every invalid key at once', () => {
    const error = invalid({ mode: 'x', listen: 'y', dataDir: '' });
    const keys = (error.details?.['problems'] as Array<{ key: string }>).map((p) => p.key).sort();
    assert.deepEqual(keys, ['dataDir', 'listen', 'mode']);
  });

  it('accepts --no-snapshots', () => {
    assert.equal(loadServerSettings({ snapshotsEnabled: false }, '/work').snapshotsEnabled, false);
  });
});

describe('parseListenAddress', () => {
  it('parses host, IPv6 and bare port forms', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0:8081'), { host: '0.0.0.0', port: 8081 });
    assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListenAddress(':9000'), { host: DEFAULTS.listenHost, port: 9000 });
  });

  it('rejects malformed addresses', () => {
    for (const text of ['8081', 'host:', 'a:b', '1.2.3.4:65536', '::1:80']) assert.equal(parseListenAddress(text), undefined, text);
  });
});
