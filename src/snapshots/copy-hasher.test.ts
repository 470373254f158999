import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CopyHasher, type Patch } from './copy-hasher.js';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Writes `patch` over the file at `path`, as the snapshot copier does with the SQLite header. */
function applyPatch(path: string, patch: Patch): void {
  const bytes = readFileSync(path);
  bytes.set(patch.bytes, patch.offset);
  writeFileSync(path, bytes);
}

describe('CopyHasher', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-copy-hasher-test-'));
  const chunkBytes = 64 * 1024;
  const patch: Patch = { offset: 18, bytes: Uint8Array.of(1, 1) };
  let counter = 0;

  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  /** Writes a source file of `size` random bytes and returns its path and a path for its copy. */
  function files(size: number): { source: string; copy: string } {
    counter += 1;
    const source = join(root, `source-${counter}`);
    writeFileSync(source, randomBytes(size));
    return { source, copy: join(root, `copy-${counter}`) };
  }

  async function withHasher<T>(use: (hasher: CopyHasher) => Promise<T>): Promise<T> {
    const hasher = CopyHasher.start({ chunkBytes });
    try {
      await hasher.ready();
      return await use(hasher);
    } finally {
      await hasher.close();
    }
  }

  it('hashes a finished copy alone', async () => {
    const { source, copy } = files(3 * chunkBytes + 123);
    copyFileSync(source, copy);
    const digest = await withHasher(async (hasher) => {
      await hasher.closeSource();
      return hasher.digestCopy(copy);
    });
    assert.equal(digest.sha256, sha256(copy));
    assert.equal(digest.size, 3 * chunkBytes + 123);
  });

  it('hashes the copy with patches from the source', async () => {
    const size = 5 * chunkBytes + 7;
    const { source, copy } = files(size);
    const digest = await withHasher(async (hasher) => {
      assert.equal(await hasher.hashSource(source, size, [patch]), size, 'the whole source was hashed before the window closed');
      await hasher.closeSource();
      copyFileSync(source, copy);
      applyPatch(copy, patch);
      // Changes to the source after the window must not reach the digest.
      writeFileSync(source, randomBytes(size));
      return hasher.digestCopy(copy);
    });
    assert.equal(digest.sha256, sha256(copy));
    assert.equal(digest.size, size);
  });

  it('continues in the copy where the source phase stopped', async () => {
    const size = 64 * 1024 * 1024;
    const { source, copy } = files(size);
    let fromSource = -1;
    const digest = await withHasher(async (hasher) => {
      const sourceHashed = hasher.hashSource(source, size, [patch]);
      copyFileSync(source, copy);
      applyPatch(copy, patch);
      await hasher.closeSource();
      writeFileSync(source, randomBytes(1024));
      fromSource = await sourceHashed;
      return hasher.digestCopy(copy);
    });
    assert.ok(fromSource >= 0, `hashed ${fromSource} bytes from the source`);
    assert.ok(fromSource <= size, `hashed ${fromSource} bytes from the source`);
    assert.equal(digest.sha256, sha256(copy));
  });

  it('rejects a copy without the patch', async () => {
    const size = 2 * chunkBytes;
    const { source, copy } = files(size);
    await withHasher(async (hasher) => {
      await hasher.hashSource(source, size, [patch]);
      await hasher.closeSource();
      copyFileSync(source, copy);
      await assert.rejects(hasher.digestCopy(copy), /does not contain the bytes hashed at offset 18/);
    });
  });

  it('rejects a copy shorter than the source', async () => {
    const size = 4 * chunkBytes;
    const { source, copy } = files(size);
    await withHasher(async (hasher) => {
      await hasher.hashSource(source, size, []);
      await hasher.closeSource();
      copyFileSync(source, copy);
      truncateSync(copy, size - 10);
      await assert.rejects(hasher.digestCopy(copy), new RegExp(`has ${size - 10} bytes, but ${size} were hashed`));
    });
  });

  it('rejects a missing copy with its errno', async () => {
    await withHasher(async (hasher) => {
      await hasher.closeSource();
      await assert.rejects(hasher.digestCopy(join(root, 'missing')), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOENT');
        assert.match(error.message, /Hashing the database copy failed/);
        return true;
      });
    });
  });

  it('rejects when the worker module is missing', async () => {
    const hasher = CopyHasher.start({ workerUrl: new URL('./no-such-worker.js', import.meta.url) });
    try {
      await assert.rejects(hasher.ready(), /hashing worker/);
      await hasher.closeSource();
      await assert.rejects(hasher.digestCopy(join(root, 'missing')), /hashing worker/);
    } finally {
      await hasher.close();
    }
  });
});
