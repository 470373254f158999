import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FILE_NAMES } from '../config/defaults.js';
import { EXIT } from '../errors/exit-codes.js';
import { runCas, startCasProcess, tempDir } from './testing/cas-process.js';
import { clientFor, newIdentity } from './testing/in-process.js';

function sessionText(name: string): string {
  return [`name: ${name}`, 'version: "0.3"', 'services:', '  - name: app', '    command: /bin/app', 'security:', '  attestation:', '    mode: none', ''].join('\n');
}

/** A real `cas serve` stopped by SIGTERM while session creates are in flight, some of them staged. */
describe('group commit at shutdown', () => {
  const root = tempDir('group-commit-shutdown');
  const args = ['--data-dir', join(root, 'data'), '--platform-dir', join(root, 'platform'), '--listen', '127.0.0.1:0'];

  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps every acknowledged create', async () => {
    const client = await newIdentity();
    const cas = await startCasProcess({ args });
    let outcomes: PromiseSettledResult<unknown>[];
    let exitCode: number | null;
    try {
      const sessions = clientFor(new URL(cas.url), client);
      await sessions.provision(readFileSync(join(root, 'data', FILE_NAMES.provisioningToken), 'utf8').trim());
      await sessions.createSession(sessionText('first'));

      const creates = Array.from({ length: 40 }, (_, index) => sessions.createSession(sessionText(`s${index}`)));
      await Promise.race(creates);
      exitCode = await cas.stop();
      outcomes = await Promise.allSettled(creates);
    } finally {
      await cas.stop();
    }
    const acknowledged = outcomes.flatMap((outcome, index) => (outcome.status === 'fulfilled' ? [`s${index}`] : []));

    assert.equal(exitCode, 0, cas.stderr());
    // A restart fails when the database stores an audit head beyond the end of the log.
    const restarted = await startCasProcess({ args });
    try {
      const stored = (await clientFor(new URL(restarted.url), client).listSessions()).map((session) => session.name);
      for (const name of acknowledged) assert.ok(stored.includes(name), `acknowledged session ${name} is missing after the restart`);

      const verified = await runCas(['audit', 'verify', join(root, 'data', 'audit'), '-o', 'json'], {});
      assert.equal(verified.code, EXIT.OK, verified.stderr);
      const counts = (JSON.parse(verified.stdout) as { counts: Record<string, number> }).counts;
      assert.ok((counts['session.created'] ?? 0) >= stored.length, `${stored.length} sessions are stored but the log records ${counts['session.created']} creates`);
    } finally {
      await restarted.stop();
    }
  });
});
