import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { HEALTH_PATHS } from '../config/defaults.js';
import { isCasError } from '../errors/cas-error.js';
import { verifySimulatedEvidence } from '../server/evidence/simulation.js';
import { rawRequest } from '../server/testing/in-process.js';
import { runCas } from '../server/testing/cas-process.js';
import { certificateDer, certificateFingerprint } from '../tls/certificates.js';
import { bootstrapCluster, minimalSession } from './harness/bootstrap.js';
import { LocalCluster, type CasNodeProcess } from './harness/local-cluster.js';

/** A standby `cas serve` process next to a primary on one data directory, through the local harness. */
describe('cas serve as standby', { timeout: 90_000 }, () => {
  let cluster: LocalCluster;
  let certificatePem: string;
  let standby: CasNodeProcess;
  let primary: CasNodeProcess;

  before(async () => {
    cluster = await LocalCluster.create({ nodes: ['node-a', 'node-b'], leaseDurationSeconds: 2, serveArguments: ['--no-snapshots'] });
    ({ certificatePem, primary } = await bootstrapCluster(cluster, 'node-a', ['node-b']));
    standby = await cluster.start('node-b');
  });
  after(async () => {
    await cluster.destroy();
  });

  it('reports health but never readiness', async () => {
    const url = new URL(cluster.url('node-b'));
    assert.equal((await rawRequest(url, { method: 'GET', path: HEALTH_PATHS.startup })).status, 200);
    assert.equal((await rawRequest(url, { method: 'GET', path: HEALTH_PATHS.liveness })).status, 200);
    const ready = await rawRequest(url, { method: 'GET', path: HEALTH_PATHS.readiness });
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'standby' });
  });

  it('names the primary in its status', async () => {
    const response = await rawRequest(new URL(cluster.url('node-b')), { method: 'GET', path: '/v1/status' });
    assert.equal(response.status, 200);
    const body = response.body as { role: string; primary: { url: string } | null; platformId: string };
    assert.equal(body.role, 'standby');
    assert.equal(body.primary?.url, cluster.url('node-a'));
    assert.equal(body.platformId, standby.entries('CAS standby listening')[0]?.['platformId']);
  });

  it('attests itself with its own certificate', async () => {
    const nonce = randomBytes(16).toString('hex');
    const response = await cluster.unverifiedOwnerClient('node-b').casEvidence(nonce);
    assert.notEqual(certificateFingerprint(response.certificatePem), certificateFingerprint(certificatePem), 'a standby cannot present the CAS identity');
    assert.ok(response.presentedCertificateDer.equals(certificateDer(response.certificatePem)), 'the evidence names the certificate of this connection');
    const verified = verifySimulatedEvidence(response.evidence, { purpose: 'cas-certificate', nonce, boundData: certificateDer(response.certificatePem) });
    assert.equal(verified.statement.nonce, nonce);
  });

  it('rejects writes with NOT_PRIMARY', async () => {
    await assert.rejects(cluster.unverifiedOwnerClient('node-b').createSession(minimalSession('on-standby')), (error: unknown) => {
      assert.ok(isCasError(error, 'NOT_PRIMARY'), String(error));
      assert.match(error.message, /is a standby/);
      assert.ok(error.message.includes(cluster.url('node-a')), error.message);
      return true;
    });
    await assert.rejects(cluster.ownerClient('node-a', certificatePem).readSession('on-standby'), (error: unknown) => isCasError(error, 'SESSION_NOT_FOUND'));
  });

  it('takes over after a clean stop', async () => {
    // SIGTERM releases the lease, so the standby does not wait for it to expire.
    assert.equal((await primary.stop()).code, 0);
    await standby.waitUntilPrimary(10_000);
    const view = await cluster.ownerClient('node-b', certificatePem).createSession(minimalSession('after-handover'));
    assert.equal(view.name, 'after-handover');
  });
});

describe('cas serve lease flags', () => {
  it('rejects invalid lease settings by flag', async () => {
    const result = await runCas(['serve', '--lease', 'zookeeper', '--lease-duration', '0', '--lease-name', 'Bad_Name'], {});
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /lease \(--lease\)/);
    assert.match(result.stderr, /leaseDurationSeconds \(--lease-duration\)/);
    assert.match(result.stderr, /leaseName \(--lease-name\)/);
  });

  it('documents the lease flags', async () => {
    const result = await runCas(['serve', '--help'], {});
    assert.equal(result.code, 0);
    for (const flag of ['--lease <kind>', '--lease-duration <seconds>', '--lease-name <name>']) {
      assert.ok(result.stdout.includes(flag), `--help lacks ${flag}`);
    }
  });
});
