import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULTS } from '../config/defaults.js';
import { loadServerSettings } from '../config/settings.js';
import { isCasError } from '../errors/cas-error.js';

describe('snapshot retention settings', () => {
  it('default to keep 10 and 7 days', () => {
    const settings = loadServerSettings({}, '/tmp');
    assert.equal(settings.snapshotKeepLast, DEFAULTS.snapshotKeepLast);
    assert.equal(settings.snapshotKeepDays, DEFAULTS.snapshotKeepDays);
    assert.equal(settings.snapshotDir, '/tmp/cas-data/snapshots');
  });

  it('accept flag strings', () => {
    const settings = loadServerSettings({ snapshotKeepLast: '3', snapshotKeepDays: '0' }, '/tmp');
    assert.equal(settings.snapshotKeepLast, 3);
    assert.equal(settings.snapshotKeepDays, 0);
  });

  for (const [input, flag] of [
    [{ snapshotKeepLast: '0' }, '--snapshot-keep'],
    [{ snapshotKeepLast: 'ten' }, '--snapshot-keep'],
    [{ snapshotKeepDays: '-1' }, '--snapshot-keep-days'],
    [{ snapshotKeepDays: '1.5' }, '--snapshot-keep-days'],
  ] as const) {
    it(`reject ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => loadServerSettings(input, '/tmp'),
        (error) => isCasError(error, 'CONFIG_INVALID') && error.message.includes(flag),
      );
    });
  }
});
