import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../server/testing/cas-process.js';
import type { ServiceConfiguration } from './cas-client.js';
import { writeInjectionFiles } from './run-service.js';

function configuration(files: Array<{ path: string; content: string }>): ServiceConfiguration {
  return { session: 's', service: 'app', command: [], environment: {}, injectionFiles: files } as unknown as ServiceConfiguration;
}

describe('writeInjectionFiles', () => {
  it('replaces a symbolic link at the path instead of writing through it', () => {
    const dir = tempDir('inject');
    const elsewhere = join(dir, 'readable-by-others');
    writeFileSync(elsewhere, 'decoy', { mode: 0o644 });
    const path = join(dir, 'app', 'key.pem');
    mkdirSync(join(dir, 'app'));
    symlinkSync(elsewhere, path);

    writeInjectionFiles(configuration([{ path, content: 'SECRET KEY' }]), dir);

    assert.equal(readFileSync(elsewhere, 'utf8'), 'decoy', 'the secret went through the link');
    assert.ok(lstatSync(path).isFile());
    assert.equal(readFileSync(path, 'utf8'), 'SECRET KEY');
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it('replaces an existing file with a wider mode by a new file of mode 0600', () => {
    const dir = tempDir('inject');
    const path = join(dir, 'config.env');
    writeFileSync(path, 'old', { mode: 0o666 });
    const before = statSync(path).ino;

    writeInjectionFiles(configuration([{ path, content: 'PASSWORD=x' }]), dir);

    assert.notEqual(statSync(path).ino, before, 'the file that was there kept receiving the secret');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['config.env'], 'a temporary file was left behind');
  });

  it('resolves relative paths against the working directory and creates parents with mode 0700', () => {
    const dir = tempDir('inject');
    const [written] = writeInjectionFiles(configuration([{ path: 'conf/app.conf', content: 'x' }]), dir);
    assert.equal(written, join(dir, 'conf', 'app.conf'));
    assert.equal(statSync(join(dir, 'conf')).mode & 0o777, 0o700);
  });
});
