import { Command, Option } from 'commander';
import { DEFAULTS } from '../../config/defaults.js';
import { CasError } from '../../errors/cas-error.js';
import { parseDuration } from '../cluster/duration.js';
import {
  AZURE_DCAP_API_KEY,
  DEFAULT_FAILOVER_DELAY_SECONDS,
  DEFAULT_IMAGE_PULL_SECRET,
  DEFAULT_PLATFORM_HOST_PATH,
  DEFAULT_STORAGE,
  defaultImage,
  SERVICE_TYPES,
  type CasMode,
  type ServiceType,
} from '../manifests/options.js';
import { buildManifests } from '../manifests/index.js';
import { addDay2Options, runDay2Verb, type Day2Flags } from './day2/day2-command.js';
import { parseWebhookUrl } from '../../webhook/audit-webhook.js';
import { parseOutputFormat } from './output.js';
import { checkFlagCombinations, provisionCas, type PluginIo, type ProvisionCasRequest } from './provision-cas.js';

interface CasCommandFlags {
  namespace?: string;
  kubeconfig?: string;
  context?: string;
  dcapApi?: string;
  verbose?: boolean;
  dryRun?: boolean;
  output?: string;
  wait: boolean;
  timeout: string;
  image: string;
  imagePullSecret: string;
  mode: CasMode;
  snapshotInterval: string;
  storageClass?: string;
  serviceType: ServiceType;
  nodeSelector?: string;
  platformHostPath: string;
  databaseStorage: string;
  snapshotStorage: string;
  auditStorage: string;
  casUrl?: string;
  ownerConfig?: string;
  backup: boolean;
  webhook?: string;
  failoverDelay: string;
}

const DEFAULT_TIMEOUT = '5m';

/** Adds `cas NAME` to the `kubectl provision` program. */
export function registerCasCommand(program: Command, io: PluginIo): void {
  addDay2Options(program.command('cas'))
    .description('Deploy a CAS to Kubernetes (in simulation mode unless --mode hardware), wait until it is ready, and provision it with your CAS_HOME identity')
    .argument('<NAME>', 'name of the CAS: the StatefulSet, its Service, and the prefix of every other object')
    .option('-n, --namespace <NAMESPACE>', 'namespace to deploy to; it must exist (default: the namespace of the kubeconfig context, else "default")')
    .option('--kubeconfig <FILE>', 'kubeconfig file (default: the files in KUBECONFIG, else ~/.kube/config)')
    .option('--context <CONTEXT>', 'kubeconfig context to use (default: the current context)')
    .option(
      '--dcap-api <KEY>',
      `API key of Intel's Provisioning Certification Service (DCAP/PCS API), stored in a Secret (default: the key an earlier run stored, else a shared key that may stop working; on Azure use ${AZURE_DCAP_API_KEY})`,
    )
    .option('--verbose', 'print the context, API server and every step, not only one line per object', false)
    .option('--dry-run', 'print every object without contacting the cluster, for GitOps (default: false)')
    .addOption(new Option('-o, --output <FORMAT>', 'with --dry-run: print the objects as yaml (default) or json; otherwise print the result as one document').choices(['yaml', 'json']))
    .option('--no-wait', 'apply the objects and exit, without waiting for the primary or provisioning it (default: wait)')
    .option('--timeout <DURATION>', 'how long to wait for the primary to become ready, such as 300s, 5m or 1h', DEFAULT_TIMEOUT)
    .option('--image <IMAGE>', 'CAS container image, built from the Dockerfile in this repository', defaultImage())
    .option('--image-pull-secret <SECRET>', 'docker-registry Secret the pods pull the image with; "" for a public image', DEFAULT_IMAGE_PULL_SECRET)
    .addOption(new Option('--mode <MODE>', 'CAS mode: simulation runs on any node, hardware needs TEE nodes').choices(['simulation', 'hardware']).default(DEFAULTS.mode))
    .option('--snapshot-interval <SECONDS>', 'seconds between two database snapshots', String(DEFAULTS.snapshotIntervalSeconds))
    .option('--storage-class <CLASS>', "StorageClass of the database, snapshot and audit-log claims (default: the cluster's default StorageClass)")
    .addOption(new Option('--service-type <TYPE>', 'type of the CAS Service').choices([...SERVICE_TYPES]).default('ClusterIP'))
    .option('--node-selector <LABELS>', 'KEY=VALUE[,KEY=VALUE...]: nodes that may run the primary and are registered as backup targets (default: all nodes)')
    .option('--platform-host-path <DIR>', "directory on each node for the node's platform key", DEFAULT_PLATFORM_HOST_PATH)
    .option('--database-storage <SIZE>', 'size of the database claim', DEFAULT_STORAGE.database)
    .option('--snapshot-storage <SIZE>', 'size of the snapshot claim', DEFAULT_STORAGE.snapshots)
    .option('--audit-storage <SIZE>', 'size of the audit-log claim', DEFAULT_STORAGE.auditLog)
    .option('--webhook <URL>', 'the CAS POSTs every audit entry as JSON to this http(s) URL, with retries and a bounded queue (cas serve --audit-webhook)')
    .option(
      '--failover-delay <DURATION>',
      "how long the primary's node must be NotReady before the failover watchdog deletes the primary pod so it restarts on another node, " +
        'such as 30s, 2m or 1h; shorter means a shorter outage, longer means fewer needless failovers (see docs/high-availability.md)',
      `${DEFAULT_FAILOVER_DELAY_SECONDS}s`,
    )
    .option('--no-backup', 'deploy without the backup DaemonSet: no other node can take over or open a snapshot (prints a warning)')
    .option('--cas-url <URL>', 'reach the CAS at this https URL for provisioning (default: a port-forward to pod NAME-0 through the API server)')
    .option('--owner-config <FILE>', 'CAS settings (YAML or JSON) to apply as the CAS owner after provisioning and on every re-run; an invalid file fails before the cluster is touched')
    .addHelpText(
      'after',
      `
Without --dcap-api the plugin prints a warning and uses a shared default key that may stop working at any
time: subscribe to Intel's DCAP/PCS API for your own key. On Azure, use --dcap-api ${AZURE_DCAP_API_KEY}.
The key is stored only in the Secret NAME-dcap-api-key; pods read it through a secretKeyRef. A re-run
without --dcap-api keeps the stored key.

The primary renews a Lease (NAME-primary) in the namespace, and a watchdog Deployment (NAME-watchdog)
deletes the primary pod once its node has been NotReady for --failover-delay and the Lease expired. The
delay trades outage length against failovers for a node that is only briefly unreachable:
docs/high-availability.md, "The delay: fast failover against split-brain".

Running the command again reconciles the objects with server-side apply; it never deletes a
PersistentVolumeClaim.

--owner-config FILE replaces the CAS settings (the same document as "cas settings set FILE"; keys left
out return to their defaults) once the CAS is provisioned, and again on each re-run, so the CAS keeps the
settings in the file. Only the CAS owner may change them. The settings are listed in docs/operations.md.

Examples:
  kubectl provision cas mycas --verbose
  kubectl provision cas mycas -n confidential --dcap-api "$DCAP_KEY" --storage-class fast-ssd
  kubectl provision cas mycas --dry-run -o yaml > mycas.yaml`,
    )
    .action(async (name: string, flags: CasCommandFlags & Day2Flags) => {
      const day2ExitCode = await runDay2Verb(name, flags, io, (namespace, dcapApiKey, image) =>
        buildManifests({ ...requestFromFlags(name, flags).options, namespace, ...(image === undefined ? {} : { image }) }, dcapApiKey),
      );
      if (day2ExitCode !== undefined) {
        process.exitCode = day2ExitCode;
        return;
      }
      const request = requestFromFlags(name, flags);
      checkFlagCombinations(request);
      await provisionCas(request, io);
    });
}

export function requestFromFlags(name: string, flags: CasCommandFlags): ProvisionCasRequest {
  return {
    options: {
      name,
      namespace: flags.namespace ?? 'default',
      image: flags.image,
      imagePullSecret: flags.imagePullSecret === '' ? undefined : flags.imagePullSecret,
      mode: flags.mode,
      snapshotIntervalSeconds: parseSeconds(flags.snapshotInterval),
      storageClass: flags.storageClass,
      serviceType: flags.serviceType,
      storage: { database: flags.databaseStorage, snapshots: flags.snapshotStorage, auditLog: flags.auditStorage },
      nodeSelector: parseLabels(flags.nodeSelector ?? ''),
      platformHostPath: flags.platformHostPath,
      backup: flags.backup,
      auditWebhook: flags.webhook === undefined ? undefined : parseWebhookUrl(flags.webhook).href,
      failoverDelaySeconds: parseWholeSeconds(flags.failoverDelay, '--failover-delay'),
    },
    namespaceFromFlag: flags.namespace !== undefined,
    kube: { kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace },
    dcapApiKey: flags.dcapApi,
    verbose: flags.verbose === true,
    dryRun: flags.dryRun === true,
    output: parseOutputFormat(flags.output),
    wait: flags.wait,
    timeoutMs: parseDuration(flags.timeout),
    casUrl: flags.casUrl,
    ownerConfig: flags.ownerConfig,
  };
}

function parseSeconds(text: string): number {
  if (!/^\d+$/.test(text)) throw new CasError('INVALID_ARGUMENT', `invalid --snapshot-interval "${text}": expected whole seconds`);
  return Number(text);
}

/** Parses a duration flag (`90s`, `2m`) that the watchdog takes in whole seconds. */
function parseWholeSeconds(text: string, flag: string): number {
  const milliseconds = parseDuration(text);
  if (milliseconds % 1000 !== 0) throw new CasError('INVALID_ARGUMENT', `invalid ${flag} "${text}": expected whole seconds, such as 90s or 2m`);
  return milliseconds / 1000;
}

/** Parses `KEY=VALUE,KEY=VALUE` as kubectl's --selector equality form. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (text.trim() === '') return labels;
  for (const pair of text.split(',')) {
    const match = /^([A-Za-z0-9./_-]+)=([A-Za-z0-9._-]*)$/.exec(pair.trim());
    if (match === null) {
      throw new CasError('INVALID_ARGUMENT', `invalid --node-selector entry "${pair}": expected KEY=VALUE`);
    }
    labels[match[1]!] = match[2]!;
  }
  return labels;
}
