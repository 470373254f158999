import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { DEFAULTS } from '../config/defaults.js';
import { repoRoot } from '../testing/paths.js';
import { CONTAINER_USER_ID, IMAGE_CAS_CLI } from './manifests/names.js';
import { DEFAULT_IMAGE_REPOSITORY, defaultImage, packageVersion } from './manifests/options.js';

const root = repoRoot();
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));

  it('runs as the UID the manifests use', () => {
    assert.match(runtimeStage, new RegExp(`^USER ${CONTAINER_USER_ID}:${CONTAINER_USER_ID}$`, 'm'));
  });

  it('exposes the API and metrics ports', () => {
    const exposed = /^EXPOSE (.+)$/m.exec(runtimeStage)?.[1]?.split(/\s+/).map(Number);
    assert.deepEqual(exposed, [DEFAULTS.listenPort, DEFAULTS.metricsPort]);
  });

  it('starts the cas bin of package.json', () => {
    const entrypoint = JSON.parse(/^ENTRYPOINT (.+)$/m.exec(runtimeStage)?.[1] ?? '[]') as string[];
    assert.deepEqual(entrypoint, ['node', `/app/${packageJson.bin['cas']}`]);
    assert.equal(entrypoint[1], IMAGE_CAS_CLI);
  });

  it('builds on node:20-slim with production dependencies', () => {
    assert.match(runtimeStage, /^FROM node:20-slim$/m);
    assert.match(dockerfile, /npm ci --omit=dev/);
  });

  it('is the image the plugin references', () => {
    assert.equal(defaultImage(), `${DEFAULT_IMAGE_REPOSITORY}:${packageJson.version}`);
    assert.equal(packageVersion(), packageJson.version);
    assert.ok(dockerfile.includes(`docker build -t ${DEFAULT_IMAGE_REPOSITORY}:${packageJson.version} .`));
  });
});

describe('krew manifest', () => {
  const template = readFileSync(join(root, 'krew', 'provision.yaml'), 'utf8');
  // Render the krew-release-bot expressions as the bot does, with a fixed tag and digest.
  const rendered = template
    .replaceAll('{{ .TagName }}', 'v0.0.0-test')
    .replace(/\{\{ addURIAndSha "([^"]+)" [^}]+\}\}/, (_match, url: string) => `uri: ${url}\n      sha256: ${'ab'.repeat(32)}`);
  const manifest = parse(rendered) as Record<string, any>;

  it('names the plugin after its binary', () => {
    assert.equal(manifest['kind'], 'Plugin');
    assert.equal(manifest['apiVersion'], 'krew.googlecontainertools.github.com/v1alpha2');
    assert.equal(`kubectl-${manifest['metadata'].name}`, 'kubectl-provision');
    assert.ok(Object.keys(packageJson.bin).includes('kubectl-provision'));
  });

  it('every platform has bin, uri and sha256', () => {
    assert.ok(manifest['spec'].platforms.length > 0);
    for (const platform of manifest['spec'].platforms) {
      assert.equal(platform.bin, 'kubectl-provision');
      assert.match(platform.uri, /^https:\/\/.+kubectl-provision-v0\.0\.0-test\.tar\.gz$/);
      assert.match(platform.sha256, /^[0-9a-f]{64}$/);
      assert.ok(platform.selector);
    }
    assert.equal(manifest['spec'].version, 'v0.0.0-test');
    assert.ok(manifest['spec'].shortDescription.length <= 80);
  });
});
