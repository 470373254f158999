import type { KubeConfig } from '@kubernetes/client-node';
import { DEFAULTS } from '../../config/defaults.js';
import { CasError, isCasError } from '../../errors/cas-error.js';
import { resourceLabel, applyObjects } from '../cluster/apply.js';
import { reconcileBackupRegistrar } from '../cluster/backup-registrar.js';
import { loadKubeConfig, namespaceWithoutCluster, type KubeConfigFlags } from '../cluster/kube-config.js';
import { forwardPodPort } from '../cluster/port-forward.js';
import { requireNamespace, requirePullSecret } from '../cluster/preflight.js';
import { readDcapApiKey } from '../cluster/dcap-key.js';
import { deleteProvisioningToken, ensureProvisioningToken } from '../cluster/provisioning-token.js';
import { provisionOwner, type ProvisionOwnerResult } from '../cluster/provision-owner.js';
import { applyOwnerSettings } from '../cluster/owner-settings.js';
import { readOwnerSettingsFile } from '../../server/owner-settings.js';
import { backupStatusLine, waitForPrimary } from '../cluster/rollout.js';
import { servesGroupVersion } from '../cluster/discovery.js';
import { buildManifests } from '../manifests/index.js';
import { casServiceMonitor, SERVICE_MONITOR_API_VERSION } from '../manifests/service-monitor.js';
import { inClusterUrl, objectNames } from '../manifests/names.js';
import { DEFAULT_DCAP_API_KEY, validateOptions, type CasDeploymentOptions } from '../manifests/options.js';
import { formatDocument, formatObjects, type OutputFormat } from './output.js';

export interface ProvisionCasRequest {
  options: CasDeploymentOptions;
  /** True when -n/--namespace was given; otherwise the namespace comes from the kubeconfig context. */
  namespaceFromFlag: boolean;
  kube: KubeConfigFlags;
  dcapApiKey: string | undefined;
  verbose: boolean;
  dryRun: boolean;
  output: OutputFormat | undefined;
  wait: boolean;
  timeoutMs: number;
  /** Reach the CAS at this URL instead of a port-forward through the API server. */
  casUrl: string | undefined;
  /** CAS settings file (YAML or JSON) to apply as the owner after provisioning, and again on every re-run. */
  ownerConfig: string | undefined;
}

export interface PluginIo {
  /** Machine output: --dry-run objects and -o documents. */
  stdout: NodeJS.WritableStream;
  /** Human output: warnings, one line per object applied, rollout state. */
  stderr: NodeJS.WritableStream;
}

/** The message printed when --dcap-api is missing. It never contains a key other than the public default. */
export const DCAP_KEY_WARNING =
  'warning: no --dcap-api key given; using the default key, which may stop working at any time. ' +
  "Subscribe to Intel's Provisioning Certification Service (DCAP/PCS API) to get your own key and pass it with --dcap-api KEY. " +
  `On Azure, use --dcap-api ${DEFAULT_DCAP_API_KEY}.`;

/** The message printed for --no-backup: what a deployment without backup targets gives up. */
export const NO_BACKUP_WARNING =
  'warning: --no-backup: no node is registered as a backup target, so only the primary\'s node can open the database and its snapshots. ' +
  'If that node or its platform key is lost, every session and secret in this CAS is lost; use --no-backup only for CAS state you can recreate.';

/**
 * `kubectl provision cas NAME`: checks the namespace and pull Secret, applies the manifests with
 * server-side apply, waits for the primary, then makes the caller's CAS_HOME identity the CAS owner and
 * pins the CAS certificate. With --dry-run it only prints the objects.
 */
export async function provisionCas(request: ProvisionCasRequest, io: PluginIo): Promise<void> {
  const say = (line: string): void => void io.stderr.write(line + '\n');
  const detail = (line: string): void => (request.verbose ? say(line) : undefined);

  // An invalid settings file fails the run here, before anything in the cluster is created or changed.
  const ownerSettings = request.ownerConfig === undefined ? undefined : readOwnerSettingsFile(request.ownerConfig);
  if (ownerSettings !== undefined) detail(`owner settings in ${request.ownerConfig} are valid`);

  if (request.options.mode === 'simulation') {
    say('warning: deploying in simulation mode: the CAS evidence is simulated and proves nothing; use --mode hardware on TEE nodes for production');
  } else {
    // NOTE: platform.ts in this build has no TEE sealing backend, so a hardware-mode primary fails at start.
    say('warning: this build of cas serve cannot seal a platform key with a TEE, so a hardware-mode primary fails to start; see docs/kubernetes.md');
  }

  if (request.options.backup === false) say(NO_BACKUP_WARNING);

  if (request.dryRun) {
    const options = { ...request.options, namespace: request.namespaceFromFlag ? request.options.namespace : namespaceWithoutCluster(request.kube) };
    validateOptions(options);
    if (request.dcapApiKey === undefined) say(DCAP_KEY_WARNING);
    io.stdout.write(formatObjects(buildManifests(options, request.dcapApiKey ?? DEFAULT_DCAP_API_KEY), request.output ?? 'yaml'));
    return;
  }

  const kube = loadKubeConfig(request.kube);
  const options = { ...request.options, namespace: kube.namespace };
  validateOptions(options);
  detail(`using context "${kube.contextName}", API server ${kube.server}, namespace "${options.namespace}"`);

  await requireNamespace(kube.config, options.namespace);
  if (options.imagePullSecret !== undefined) {
    await requirePullSecret(kube.config, options.namespace, options.imagePullSecret, options.image);
    detail(`image pull Secret "${options.imagePullSecret}" exists`);
  }

  // A re-run without --dcap-api keeps the key an earlier run stored instead of replacing it with the default.
  const storedKey = request.dcapApiKey === undefined ? await readDcapApiKey(kube.config, options.namespace, options.name) : undefined;
  const dcapApiKey = request.dcapApiKey ?? storedKey ?? DEFAULT_DCAP_API_KEY;
  if (request.dcapApiKey === undefined && dcapApiKey === DEFAULT_DCAP_API_KEY) say(DCAP_KEY_WARNING);
  if (storedKey !== undefined && storedKey !== DEFAULT_DCAP_API_KEY) {
    detail(`no --dcap-api given: keeping the key stored in secret/${objectNames(options.name).dcapSecret}`);
  }

  // The token Secret must exist before the pod starts, because the kubelet mounts it only at start-up.
  const { token, created } = await ensureProvisioningToken(kube.config, options.namespace, options.name);
  detail(`${created ? 'created' : 'reusing'} secret/${objectNames(options.name).provisioningTokenSecret} with a one-time provisioning token`);

  const objects = buildManifests(options, dcapApiKey);
  if (await servesGroupVersion(kube.config, SERVICE_MONITOR_API_VERSION)) {
    objects.push(casServiceMonitor(options));
    detail(`the cluster serves ${SERVICE_MONITOR_API_VERSION}, so a ServiceMonitor for the metrics port is applied too`);
  }
  await applyObjects(kube.config, objects, (object) => say(`${resourceLabel(object)} serverside-applied`));

  if (!request.wait) {
    say(`not waiting (--no-wait): run "kubectl provision cas ${options.name} -n ${options.namespace}" again to wait for the primary and provision it`);
    if (ownerSettings !== undefined) say(`not applying --owner-config ${request.ownerConfig} (--no-wait): pass it again on that run`);
    writeResult(io, request.output, { name: options.name, namespace: options.namespace, applied: objects.map(resourceLabel), provisioned: false });
    return;
  }

  await waitForPrimary(kube.config, options.namespace, options.name, request.timeoutMs, say);

  let registrar: { keyHash: string } | undefined;
  let registrarAuthorized = false;
  let changedSettings: string[] | null = null;
  // Runs while the CAS is still reachable (the port-forward is open), so that the owner can authorize the
  // registrar over the connection pinned to the attested certificate.
  const result = await provisionThroughCluster(request, kube.config, options, token, say, detail, async (connectUrl, provisioned) => {
    await deleteProvisioningToken(kube.config, options.namespace, options.name);
    detail(`deleted secret/${objectNames(options.name).provisioningTokenSecret}`);
    if (ownerSettings !== undefined) {
      // Applied on every run, so the CAS keeps the settings in the file. A run by an identity that is not
      // the owner fails here with PERMISSION_DENIED.
      const applied = await applyOwnerSettings({ connectUrl, casCertificatePem: provisioned.certificatePem, settings: ownerSettings });
      changedSettings = applied.changed;
      say(
        applied.changed.length === 0
          ? `CAS settings from ${request.ownerConfig} were already in effect`
          : `applied CAS settings from ${request.ownerConfig}; changed: ${applied.changed.join(', ')}`,
      );
    }
    if (options.backup === false) return;
    const secret = `secret/${objectNames(options.name).backupRegistrarSecret}`;
    try {
      const reconciled = await reconcileBackupRegistrar({
        config: kube.config,
        namespace: options.namespace,
        name: options.name,
        connectUrl,
        casCertificatePem: provisioned.certificatePem,
        onApplied: (object) => say(`${resourceLabel(object)} serverside-applied`),
      });
      registrar = reconciled;
      registrarAuthorized = true;
      if (reconciled.outcome === 'unchanged') {
        say(`the backup registrar (key sha256 ${reconciled.keyHash}) was already authorized to register nodes as backup targets`);
      } else if (reconciled.outcome === 'authorized') {
        say(`authorized the backup registrar (key sha256 ${reconciled.keyHash}) to register nodes as backup targets`);
      } else {
        say(
          `warning: the backup registrar key in ${secret} (sha256 ${reconciled.replacedKeyHash}) was not authorized (revoked, written by someone else, or left by an interrupted run), ` +
            `so it was replaced by a new key (sha256 ${reconciled.keyHash}), which is authorized to register nodes as backup targets`,
        );
      }
    } catch (error) {
      // Someone other than the owner may re-run the plugin to reconcile the objects; only the owner can
      // authorize, so the run goes on and says what the owner must do.
      if (!isCasError(error, 'PERMISSION_DENIED')) throw error;
      if (typeof error.details?.['registrarKeyHash'] === 'string') registrar = { keyHash: error.details['registrarKeyHash'] };
      say(`warning: ${error.message}`);
    }
  });
  if (options.backup !== false) say(await backupStatusLine(kube.config, options.namespace, options.name));

  say(
    result.provisioned
      ? `CAS "${options.name}" provisioned: owner is the client identity in CAS_HOME (key sha256 ${result.clientKeyHash})`
      : `CAS "${options.name}" was already provisioned; its owner is unchanged`,
  );
  say(`pinned CAS certificate sha256 ${result.certificateSha256} for ${result.pinnedUrls.join(', ')}`);
  writeResult(io, request.output, {
    name: options.name,
    namespace: options.namespace,
    applied: objects.map(resourceLabel),
    provisioned: result.provisioned,
    clientKeyHash: result.clientKeyHash,
    certificateSha256: result.certificateSha256,
    pinnedUrls: result.pinnedUrls,
    backupRegistrarKeyHash: registrar?.keyHash ?? null,
    backupRegistrarAuthorized: registrar === undefined ? null : registrarAuthorized,
    changedSettings,
  });
}

async function provisionThroughCluster(
  request: ProvisionCasRequest,
  config: KubeConfig,
  options: CasDeploymentOptions,
  token: string,
  say: (line: string) => void,
  detail: (line: string) => void,
  /** Called after provisioning with the URL that still reaches the CAS. */
  whileConnected: (connectUrl: string, result: ProvisionOwnerResult) => Promise<void>,
): Promise<ProvisionOwnerResult> {
  const pinUrls = [inClusterUrl(options.name, options.namespace)];
  if (request.casUrl !== undefined) {
    pinUrls.push(request.casUrl);
    detail(`provisioning through ${request.casUrl}`);
    const result = await provisionOwner({ connectUrl: request.casUrl, connectUrlIsTemporary: false, pinUrls, token, mode: options.mode });
    await whileConnected(request.casUrl, result);
    return result;
  }

  const podName = objectNames(options.name).primaryPod;
  const forward = await forwardPodPort(config, options.namespace, podName, DEFAULTS.listenPort, say);
  const connectUrl = `https://127.0.0.1:${forward.localPort}`;
  detail(`forwarding ${connectUrl} to pod ${podName} port ${DEFAULTS.listenPort} through the API server`);
  try {
    const result = await provisionOwner({ connectUrl, connectUrlIsTemporary: true, pinUrls, token, mode: options.mode });
    await whileConnected(connectUrl, result);
    return result;
  } finally {
    await forward.close();
  }
}

function writeResult(io: PluginIo, output: OutputFormat | undefined, document: Record<string, unknown>): void {
  if (output !== undefined) io.stdout.write(formatDocument(document, output));
}

/** Throws INVALID_ARGUMENT for flag combinations that cannot work together. */
export function checkFlagCombinations(request: ProvisionCasRequest): void {
  if (request.dryRun && request.casUrl !== undefined) {
    throw new CasError('INVALID_ARGUMENT', '--cas-url has no effect with --dry-run, which does not contact the cluster or the CAS');
  }
}
