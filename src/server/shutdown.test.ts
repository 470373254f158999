import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { loadServerSettings } from '../config/settings.js';
import { FILE_NAMES } from '../config/defaults.js';
import { createLogger } from '../logging/logger.js';
import { CasDatabase, openPlatform } from '../store/index.js';
import { createCasServer } from './cas-server.js';
import { tempDir } from './testing/cas-process.js';
import { clientFor, newIdentity } from './testing/in-process.js';

/** A session whose creation takes a while: several RSA-3072 keys are generated. */
const SLOW_SESSION = `name: slow
version: "0.3"
secrets:
${[1, 2, 3, 4].map((i) => `  - name: key${i}\n    kind: private-key\n    key_type: RSA-3072`).join('\n')}
`;

describe('server shutdown', () => {
  it('finishes a request in flight before closing', { timeout: 60_000 }, async () => {
    const root = tempDir('shutdown');
    const settings = loadServerSettings({ dataDir: join(root, 'data'), platformDir: join(root, 'platform'), listen: '127.0.0.1:0', snapshotsEnabled: false, logLevel: 'info' });
    const lines = new PassThrough();
    let resolveReceived: () => void = () => undefined;
    const received = new Promise<void>((resolve) => {
      resolveReceived = resolve;
    });
    lines.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (text.includes('"msg":"incoming request"') && text.includes('"url":"/v1/sessions"')) resolveReceived();
    });
    // The line for an arriving request is logged at level debug.
    const server = await createCasServer({ settings, logger: createLogger({ level: 'debug', destination: lines }) });
    const { url } = await server.listen();
    const client = clientFor(new URL(url), await newIdentity());
    await client.provision(readFileSync(join(settings.dataDir, FILE_NAMES.provisioningToken), 'utf8'));

    const creation = client.createSession(SLOW_SESSION);
    await received;
    await server.close('signal');
    const created = await creation;
    assert.equal(created.name, 'slow');

    // The database was closed cleanly and holds the session.
    const platform = await openPlatform({ mode: 'simulation', platformDir: settings.platformDir });
    const db = CasDatabase.open({ dataDir: settings.dataDir, platform });
    try {
      assert.equal(db.getSession('slow')?.hash, created.hash);
    } finally {
      db.close();
    }
    await assert.rejects(client.listSessions(), /cannot reach CAS/);
  });
});
