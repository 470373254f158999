import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DatabaseCopier, type Patch } from './database-copier.js';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Writes `patch` over the file at `path`, as the snapshot copier does with the SQLite header. */
function applyPatch(path: string, patch: Patch): void {
  const bytes = readFileSync(path);
  bytes.set(patch.bytes, patch.offset);
  writeFileSync(path, bytes);
}

describe('DatabaseCopier', () => {
  const root = mkdtempSync(join(tmpdir(), 'cas-database-copier-test-'));
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

  async function withCopier<T>(use: (copier: DatabaseCopier) => Promise<T>): Promise<T> {
    const copier = DatabaseCopier.start({ chunkBytes });
    try {
      await copier.ready();
      return await use(copier);
    } finally {
      await copier.close();
    }
  }

  it('hashes a finished file alone', async () => {
    const { source, copy } = files(3 * chunkBytes + 123);
    copyFileSync(source, copy);
    const digest = await withCopier(async (copier) => {
      await copier.closeSource();
      return copier.digestCopy(copy);
    });
    assert.equal(digest.sha256, sha256(copy));
    assert.equal(digest.size, 3 * chunkBytes + 123);
  });

  it('hashes an empty file', async () => {
    const { copy } = files(0);
    writeFileSync(copy, '');
    const digest = await withCopier((copier) => copier.digestCopy(copy));
    assert.equal(digest.sha256, sha256(copy));
    assert.equal(digest.size, 0);
  });

  it('copies and hashes the patched copy', async () => {
    const size = 64 * 1024 * 1024 + 7;
    const { source, copy } = files(size);
    let fromSource = -1;
    const digest = await withCopier(async (copier) => {
      fromSource = await copier.copy(source, copy, size, [patch]);
      await copier.closeSource();
      assert.ok(readFileSync(copy).equals(readFileSync(source)), 'the copy has the source bytes');
      applyPatch(copy, patch);
      // Changes to the source after the copy must not reach the digest.
      writeFileSync(source, randomBytes(size));
      return copier.digestCopy(copy);
    });
    assert.ok(fromSource >= 0, `hashed ${fromSource} bytes from the source`);
    assert.ok(fromSource <= size, `hashed ${fromSource} bytes from the source`);
    assert.equal(digest.sha256, sha256(copy));
    assert.equal(digest.size, size);
  });

  it('rejects an existing destination after closing the source', async () => {
    const size = 2 * chunkBytes;
    const { source, copy } = files(size);
    writeFileSync(copy, 'already here');
    await withCopier(async (copier) => {
      await assert.rejects(copier.copy(source, copy, size, []), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'EEXIST');
        assert.match(error.message, /Copying or hashing the database failed/);
        return true;
      });
      await copier.closeSource();
    });
    assert.equal(readFileSync(copy, 'utf8'), 'already here');
  });

  it('rejects a copy without the patch', async () => {
    const size = 2 * chunkBytes;
    const { source, copy } = files(size);
    await withCopier(async (copier) => {
      await copier.copy(source, copy, size, [patch]);
      await assert.rejects(copier.digestCopy(copy), /does not contain the bytes hashed at offset 18/);
    });
  });

  it('rejects a copy shorter than the source', async () => {
    const size = 4 * chunkBytes;
    const { source, copy } = files(size);
    await withCopier(async (copier) => {
      await copier.copy(source, copy, size, []);
      truncateSync(copy, size - 10);
      // Whether the child hashed all of the source or finished from the copy, the copy is shorter than the source.
      await assert.rejects(copier.digestCopy(copy), new RegExp(`has ${size - 10} bytes, but (${size} were hashed|its source had ${size})`));
    });
  });

  it('rejects a missing copy with its errno', async () => {
    await withCopier(async (copier) => {
      await assert.rejects(copier.digestCopy(join(root, 'missing')), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'ENOENT');
        assert.match(error.message, /Copying or hashing the database failed/);
        return true;
      });
    });
  });

  it('rejects when the module is missing', async () => {
    const copier = DatabaseCopier.start({ modulePath: join(root, 'no-such-copier.js') });
    try {
      await assert.rejects(copier.ready(), /snapshot copy process exited with code 1 before it responded: .*Cannot find module/s);
      await copier.closeSource();
      await assert.rejects(copier.digestCopy(join(root, 'missing')), /snapshot copy process exited/);
    } finally {
      await copier.close();
    }
  });

  it('kills a child that closes IPC', { timeout: 30_000 }, async () => {
    // A copy process that closes its IPC channel on the copy request and keeps running.
    const deaf = join(root, 'deaf-copier.mjs');
    const pidFile = join(root, 'deaf-copier.pid');
    writeFileSync(
      deaf,
      `import { writeFileSync } from 'node:fs';
       writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
       process.send({ type: 'ready' });
       process.on('message', () => { process.disconnect(); setInterval(() => undefined, 1000); });`,
    );
    const { source, copy } = files(chunkBytes);
    const copier = DatabaseCopier.start({ modulePath: deaf });
    try {
      await copier.ready();
      await assert.rejects(copier.copy(source, copy, chunkBytes, []), /exited on signal SIGKILL/);
      await copier.closeSource();
    } finally {
      await copier.close();
    }
    assert.throws(() => process.kill(Number(readFileSync(pidFile, 'utf8')), 0), { code: 'ESRCH' }, 'the copy process still runs');
  });

  it('kills a child that is still copying on closeSource', async () => {
    // A copy process that starts, accepts the copy request and never responds to it.
    const silent = join(root, 'silent-copier.mjs');
    writeFileSync(silent, "process.send({ type: 'ready' }); process.on('message', () => undefined);");
    const { source, copy } = files(chunkBytes);
    const copier = DatabaseCopier.start({ modulePath: silent });
    try {
      await copier.ready();
      const copying = copier.copy(source, copy, chunkBytes, []);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await copier.closeSource();
      await assert.rejects(copying, /exited on signal SIGKILL/);
    } finally {
      await copier.close();
    }
    assert.equal(existsSync(copy), false);
  });

  it('kills a child that never responds', async () => {
    const silent = join(root, 'silent-after-ready.mjs');
    writeFileSync(silent, "process.send({ type: 'ready' }); process.on('message', () => undefined);");
    const { source, copy } = files(chunkBytes);
    const copier = DatabaseCopier.start({ modulePath: silent, timeouts: { baseMs: 200, minBytesPerSecond: 1024 * 1024 * 1024 } });
    try {
      await copier.ready();
      await assert.rejects(copier.copy(source, copy, chunkBytes, []), /did not respond to its copy step within 200 ms and was killed/);
      await copier.closeSource();
    } finally {
      await copier.close();
    }
  });

  it('kills a child that never starts', async () => {
    const mute = join(root, 'mute-copier.mjs');
    writeFileSync(mute, 'process.on(\'message\', () => undefined);');
    const copier = DatabaseCopier.start({ modulePath: mute, timeouts: { startMs: 200 } });
    try {
      await assert.rejects(copier.ready(), /did not respond to its start step/);
    } finally {
      await copier.close();
    }
  });
});
