import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCasError } from '../errors/cas-error.js';
import { writeFileAtomic } from './atomic-file.js';

const root = mkdtempSync(join(tmpdir(), 'cas-atomic-file-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('writes and replaces a file with mode 0600', () => {
    const path = join(root, 'state');
    writeFileAtomic(path, Buffer.from('first'));
    writeFileAtomic(path, Buffer.from('second'));
    assert.equal(readFileSync(path, 'utf8'), 'second');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(root), ['state']);
  });

  it('writes an empty file', () => {
    const path = join(root, 'empty');
    writeFileAtomic(path, Buffer.alloc(0));
    assert.equal(statSync(path).size, 0);
  });

  it('fails with INTERNAL naming the path', () => {
    const path = join(root, 'missing-dir', 'file');
    assert.throws(
      () => writeFileAtomic(path, Buffer.from('x')),
      (error: unknown) => isCasError(error, 'INTERNAL') && error.message.includes(path),
    );
  });
});
