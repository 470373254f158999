import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CasClient } from '../client/cas-client.js';
import { FILE_NAMES } from '../config/defaults.js';
import { CasError } from '../errors/cas-error.js';
import { sharedDir } from '../testing/paths.js';
import { clientFor, newIdentity, startTestCas, type TestCas } from './testing/in-process.js';

/**
 * Every session sample loads through the API: valid files are created (in the documented load order),
 * invalid ones are rejected with a 4xx whose message names the problem.
 */
const samples = join(sharedDir(), 'session-samples');

const VALID = [
  'written/namespace.yaml',
  'written/shop-database.yaml',
  'written/shop-web.yaml',
  'written/simulated-dev.yaml',
  'public/ethernity-securelock.yaml',
  'public/ethernity-trustedzone.yaml',
  'public/iexec-task.yaml',
  'public/spire-bundle.yaml',
  'public/spire-svid.yaml',
];

const INVALID: Array<{ file: string; message: RegExp }> = [
  { file: 'written/invalid-old-version.yaml', message: /0\.2/ },
  { file: 'written/invalid-unrendered-template.yaml', message: /\$SESSION|\$MRENCLAVE/ },
  { file: 'written/invalid-indentation.yaml', message: /line \d+, column \d+/ },
];

describe('session samples through the API', () => {
  let cas: TestCas;
  let client: CasClient;

  before(async () => {
    cas = await startTestCas();
    const identity = await newIdentity();
    client = clientFor(cas.url, identity);
    await client.provision(readFileSync(join(cas.dataDir, FILE_NAMES.provisioningToken), 'utf8'));
  });

  after(async () => {
    await cas?.close();
  });

  it('covers every sample file', () => {
    const files = ['written', 'public'].flatMap((dir) => readdirSync(join(samples, dir)).filter((f) => f.endsWith('.yaml')).map((f) => `${dir}/${f}`));
    const listed = [...VALID, ...INVALID.map((entry) => entry.file)];
    assert.deepEqual([...files].sort(), [...listed].sort());
  });

  for (const file of VALID) {
    it(`creates ${file}`, async () => {
      const text = readFileSync(join(samples, file), 'utf8');
      const name = /^name:\s*['"]?([^'"\n]+)['"]?\s*$/m.exec(text)?.[1];
      assert.ok(name !== undefined, `no name in ${file}`);

      // A namespaced sample needs its parent session; two samples share a name, so an existing one goes first.
      const parent = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : undefined;
      const existing = (await client.listSessions()).map((s) => s.name);
      if (parent !== undefined && !existing.includes(parent)) {
        await client.createSession(`name: ${parent}\nversion: "0.3"\naccess_policy:\n  create_sessions: [CREATOR]\n`);
      }
      if (existing.includes(name)) await client.deleteSession(name);

      const created = await client.createSession(text);
      assert.equal(created.name, name);
      assert.match(created.hash, /^[0-9a-f]{64}$/);
      const read = await client.readSession(name);
      assert.equal(read.hash, created.hash);
    });
  }

  for (const { file, message } of INVALID) {
    it(`rejects ${file} naming the problem`, async () => {
      const text = readFileSync(join(samples, file), 'utf8');
      try {
        await client.createSession(text);
        assert.fail(`${file} was accepted`);
      } catch (error) {
        assert.ok(error instanceof CasError, String(error));
        assert.equal(error.code, 'SESSION_INVALID', error.message);
        assert.equal(error.details?.['status'], 400);
        assert.match(error.message, message);
      }
    });
  }
});
