import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect as connectTcp } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { parse as parseYaml } from 'yaml';
import { createSelfSignedCertificate } from '../../tls/certificates.js';

/**
 * A Kubernetes API server for tests, on 127.0.0.1 over HTTPS with bearer-token authentication. It speaks
 * the REST protocol for the calls kubectl-provision makes: discovery, get, list (with field selectors for
 * events), create, server-side apply (PATCH application/apply-patch+yaml), delete, pod logs and the
 * pods/portforward WebSocket (v4.channel.k8s.io), with an in-memory object store. For the failover watchdog
 * and the Kubernetes lease it also serves nodes and leases, replace (PUT) with resourceVersion checks and
 * delete with a uid precondition.
 *
 * It is deliberately small. Its simplifications:
 * - Server-side apply replaces the fields the applied configuration sets and keeps `status` and the
 *   server-owned metadata. It does not track field ownership across several managers.
 * - A built-in StatefulSet controller creates the claims of `volumeClaimTemplates` and pod `NAME-0`, as the
 *   real controller does, so tests can check that claims survive a re-run. Readiness is set by the test.
 * - A built-in DaemonSet controller keeps one pod on every Node that matches the pod template's
 *   `nodeSelector` (taints, tolerations and affinity are ignored) and counts ready pods in the DaemonSet's
 *   status. It reacts to DaemonSet and Node writes and to `addNode`; it does not roll pods when the
 *   template changes. New pods are passed to `onObjectWritten`, where a test kubelet can run them.
 * - Deployments (the failover watchdog's), ClusterRoles and ClusterRoleBindings are stored only: no
 *   Deployment controller runs their pods and no RBAC is enforced.
 * - No admission, defaulting or schema validation: the manifest tests validate the schemas.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  contentType: string | undefined;
  body: unknown;
}

interface ResourceType {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
}

type StoredObject = Record<string, any>;

const RESOURCE_TYPES: ResourceType[] = [
  { group: '', version: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', version: 'v1', resource: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', resource: 'services', kind: 'Service', namespaced: true },
  { group: '', version: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', version: 'v1', resource: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', resource: 'events', kind: 'Event', namespaced: true },
  { group: '', version: 'v1', resource: 'persistentvolumeclaims', kind: 'PersistentVolumeClaim', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'daemonsets', kind: 'DaemonSet', namespaced: true },
  { group: 'apps', version: 'v1', resource: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'roles', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'networking.k8s.io', version: 'v1', resource: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
  { group: 'policy', version: 'v1', resource: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true },
  { group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false },
  { group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease', namespaced: true },
  { group: 'monitoring.coreos.com', version: 'v1', resource: 'servicemonitors', kind: 'ServiceMonitor', namespaced: true },
];

export interface PortForwardTarget {
  host: string;
  port: number;
}

export class TestApiServer {
  readonly requests: RecordedRequest[] = [];
  /** Resources (plural names, such as `statefulsets`) whose writes get 403 Forbidden, as RBAC would return. */
  readonly forbiddenWrites = new Set<string>();
  /** Called after each create or apply, so a test can play the kubelet (start a process, set readiness). */
  onObjectWritten: ((object: StoredObject) => void) | undefined;
  /**
   * API groups the server neither announces nor serves. A test deletes a group to play a cluster that has
   * it: monitoring.coreos.com is there only where the Prometheus Operator is installed.
   */
  readonly unservedGroups = new Set<string>(['monitoring.coreos.com']);

  private readonly objects = new Map<string, StoredObject>();
  private readonly logs = new Map<string, string>();
  private readonly forwards = new Map<string, PortForwardTarget>();
  private resourceVersion = 1;
  private server: Server | undefined;
  private readonly sockets = new Set<Duplex>();

  private constructor(
    readonly token: string,
    readonly certificatePem: string,
    private readonly privateKeyPem: string,
  ) {}

  static async start(): Promise<TestApiServer> {
    const { certificatePem, privateKeyPem } = await createSelfSignedCertificate({
      commonName: 'test-api-server',
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
      validDays: 1,
    });
    const instance = new TestApiServer(randomUUID(), certificatePem, privateKeyPem);
    await instance.listen();
    return instance;
  }

  get url(): string {
    const address = this.server?.address();
    if (address === null || address === undefined || typeof address === 'string') throw new Error('test API server is not listening');
    return `https://127.0.0.1:${address.port}`;
  }

  /** Returns a kubeconfig for this server with one context, `test`, whose namespace is `contextNamespace`. */
  kubeconfig(contextNamespace = 'default'): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.certificatePem).toString('base64') } }],
      users: [{ name: 'test', user: { token: this.token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test', namespace: contextNamespace } }],
      'current-context': 'test',
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
  }

  // Test controls: seed objects, read the store, set status, logs and port-forward targets.

  /** Empties the store, the request record, logs and port-forward targets, and removes the write hook. */
  reset(): void {
    this.objects.clear();
    this.logs.clear();
    this.forwards.clear();
    this.requests.length = 0;
    this.forbiddenWrites.clear();
    this.onObjectWritten = undefined;
  }

  put(object: StoredObject): StoredObject {
    const type = typeForKind(object['apiVersion'], object['kind']);
    const stored = this.withServerMetadata(structuredClone(object), undefined);
    this.objects.set(this.key(type, stored['metadata'].namespace, stored['metadata'].name), stored);
    return stored;
  }

  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): StoredObject | undefined {
    return this.objects.get(this.key(typeForKind(apiVersion, kind), namespace, name));
  }

  list(apiVersion: string, kind: string, namespace?: string): StoredObject[] {
    const type = typeForKind(apiVersion, kind);
    return [...this.objects.entries()]
      .filter(([key]) => key.startsWith(this.prefix(type, namespace)))
      .map(([, object]) => object);
  }

  all(): StoredObject[] {
    return [...this.objects.values()];
  }

  /** Adds a ready Node, as a node joining the cluster, and lets the DaemonSet controller schedule on it. */
  addNode(name: string, labels: Record<string, string> = {}): StoredObject {
    const node = this.put({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    this.reconcileDaemonSets();
    return node;
  }

  /** Marks a pod Running and Ready, as its kubelet would, and updates the counts of its DaemonSet. */
  setPodReady(namespace: string, name: string): void {
    const pod = this.get('v1', 'Pod', namespace, name);
    if (pod === undefined) throw new Error(`no pod ${namespace}/${name}`);
    pod['status'] = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
    this.reconcileDaemonSets();
  }

  /** Marks the StatefulSet's pod ready and its rollout complete, as the kubelet and controller would. */
  setStatefulSetReady(namespace: string, name: string): void {
    const statefulSet = this.get('apps/v1', 'StatefulSet', namespace, name);
    if (statefulSet === undefined) throw new Error(`no statefulset ${namespace}/${name}`);
    const revision = `${name}-rev${statefulSet['metadata'].generation}`;
    statefulSet['status'] = {
      observedGeneration: statefulSet['metadata'].generation,
      replicas: 1,
      readyReplicas: 1,
      updatedReplicas: 1,
      currentRevision: revision,
      updateRevision: revision,
    };
    const pod = this.get('v1', 'Pod', namespace, `${name}-0`);
    if (pod !== undefined) {
      pod['status'] = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
    }
  }

  setPodLog(namespace: string, pod: string, container: string, text: string): void {
    this.logs.set(`${namespace}/${pod}/${container}`, text);
  }

  setPortForwardTarget(namespace: string, pod: string, port: number, target: PortForwardTarget): void {
    this.forwards.set(`${namespace}/${pod}:${port}`, target);
  }

  addEvent(namespace: string, involved: { kind: string; name: string }, type: string, reason: string, message: string): void {
    this.put({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${involved.name}.${randomUUID().slice(0, 8)}`, namespace },
      involvedObject: { kind: involved.kind, name: involved.name, namespace },
      type,
      reason,
      message,
    });
  }

  // HTTP handling.

  private async listen(): Promise<void> {
    this.server = createServer({ cert: this.certificatePem, key: this.privateKeyPem }, (req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        sendStatus(res, 500, 'InternalError', error instanceof Error ? error.message : String(error));
      });
    });
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    const webSockets = new WebSocketServer({
      noServer: true,
      handleProtocols: (protocols) => (protocols.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false),
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.sockets.add(socket);
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      const match = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/.exec(url.pathname);
      this.requests.push({ method: 'UPGRADE', path: url.pathname, query: url.searchParams, contentType: undefined, body: undefined });
      if (!this.authorized(req) || match === null) {
        socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
        return;
      }
      webSockets.handleUpgrade(req, socket, head, (ws) => this.portForward(ws, match[1]!, match[2]!, Number(url.searchParams.get('ports'))));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const text = await readBody(req);
    const contentType = req.headers['content-type']?.split(';')[0];
    let body: unknown;
    if (text.length > 0) body = contentType === 'application/apply-patch+yaml' ? parseYaml(text) : JSON.parse(text);
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, contentType, body });

    if (!this.authorized(req)) return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
    if (req.method === 'GET' && this.discovery(url.pathname, res)) return;

    const route = parseResourcePath(url.pathname);
    if (route === undefined || this.unservedGroups.has(route.type.group)) return sendStatus(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const { type, namespace, name, subresource } = route;

    if (subresource === 'log' && req.method === 'GET') return this.podLog(res, namespace!, name!, url.searchParams);
    if (subresource !== undefined) return sendStatus(res, 404, 'NotFound', `subresource ${subresource} is not served by the test API server`);
    if (type.namespaced && namespace !== undefined && type.resource !== 'namespaces' && !this.objects.has(this.key(typeForKind('v1', 'Namespace'), undefined, namespace))) {
      if (req.method !== 'GET' || name !== undefined) return sendStatus(res, 404, 'NotFound', `namespaces "${namespace}" not found`);
    }

    if (req.method !== 'GET' && this.forbiddenWrites.has(type.resource)) {
      const group = type.group === '' ? '' : `.${type.group}`;
      return sendStatus(res, 403, 'Forbidden', `${type.resource}${group} "${name ?? ''}" is forbidden: User "test" cannot ${(req.method ?? "").toLowerCase()} resource "${type.resource}" in namespace "${namespace}"`);
    }

    switch (req.method) {
      case 'GET':
        return name === undefined ? this.listObjects(res, type, namespace, url.searchParams) : this.getObject(res, type, namespace, name);
      case 'POST':
        return this.createObject(res, type, namespace, body as StoredObject);
      case 'PATCH':
        return this.applyObject(res, type, namespace, name!, body as StoredObject, contentType, url.searchParams);
      case 'PUT':
        return this.replaceObject(res, type, namespace, name!, body as StoredObject);
      case 'DELETE':
        return this.deleteObject(res, type, namespace, name!, body as StoredObject | undefined);
      default:
        return sendStatus(res, 405, 'MethodNotAllowed', `${req.method} is not supported`);
    }
  }

  private discovery(path: string, res: ServerResponse): boolean {
    if (path === '/version') {
      sendJson(res, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-test', platform: 'linux/amd64' });
      return true;
    }
    if (path === '/api') {
      sendJson(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
      return true;
    }
    if (path === '/apis') {
      const groups = [...new Set(RESOURCE_TYPES.filter((type) => type.group !== '' && !this.unservedGroups.has(type.group)).map((type) => type.group))];
      sendJson(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((name) => ({ name, versions: [{ groupVersion: `${name}/v1`, version: 'v1' }], preferredVersion: { groupVersion: `${name}/v1`, version: 'v1' } })),
      });
      return true;
    }
    const match = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (match === null) return false;
    const group = match[2] ?? '';
    const version = match[1] ?? match[3]!;
    const resources = this.unservedGroups.has(group) ? [] : RESOURCE_TYPES.filter((type) => type.group === group && type.version === version);
    if (resources.length === 0) return false;
    sendJson(res, 200, {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group === '' ? version : `${group}/${version}`,
      resources: resources.map((type) => ({
        name: type.resource,
        singularName: type.kind.toLowerCase(),
        namespaced: type.namespaced,
        kind: type.kind,
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update'],
      })),
    });
    return true;
  }

  private getObject(res: ServerResponse, type: ResourceType, namespace: string | undefined, name: string): void {
    const object = this.objects.get(this.key(type, namespace, name));
    if (object === undefined) return sendStatus(res, 404, 'NotFound', `${type.resource} "${name}" not found`);
    sendJson(res, 200, object);
  }

  private listObjects(res: ServerResponse, type: ResourceType, namespace: string | undefined, query: URLSearchParams): void {
    let items = [...this.objects.entries()].filter(([key]) => key.startsWith(this.prefix(type, namespace))).map(([, object]) => object);
    const fieldSelector = query.get('fieldSelector');
    if (fieldSelector !== null && fieldSelector !== '') {
      for (const term of fieldSelector.split(',')) {
        const [path, value] = term.split('=');
        items = items.filter((item) => fieldValue(item, path!) === value);
      }
    }
    sendJson(res, 200, { apiVersion: groupVersion(type), kind: `${type.kind}List`, metadata: { resourceVersion: String(this.resourceVersion) }, items });
  }

  private createObject(res: ServerResponse, type: ResourceType, namespace: string | undefined, body: StoredObject): void {
    const problem = checkIdentity(type, namespace, undefined, body);
    if (problem !== undefined) return sendStatus(res, 400, 'BadRequest', problem);
    const key = this.key(type, namespace, body['metadata'].name);
    if (this.objects.has(key)) return sendStatus(res, 409, 'AlreadyExists', `${type.resource} "${body['metadata'].name}" already exists`);
    const stored = this.withServerMetadata(structuredClone(body), undefined);
    this.objects.set(key, stored);
    this.afterWrite(stored);
    sendJson(res, 201, stored);
  }

  private applyObject(
    res: ServerResponse,
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    body: StoredObject,
    contentType: string | undefined,
    query: URLSearchParams,
  ): void {
    if (contentType !== 'application/apply-patch+yaml') {
      return sendStatus(res, 415, 'UnsupportedMediaType', `the test API server accepts only server-side apply patches, not ${contentType}`);
    }
    const fieldManager = query.get('fieldManager');
    if (fieldManager === null || fieldManager === '') return sendStatus(res, 422, 'Invalid', 'fieldManager is required for apply requests');
    const problem = checkIdentity(type, namespace, name, body);
    if (problem !== undefined) return sendStatus(res, 400, 'BadRequest', problem);

    const key = this.key(type, namespace, name);
    const existing = this.objects.get(key);
    const applied = structuredClone(body);
    if (existing !== undefined && existing['status'] !== undefined) applied['status'] = existing['status'];
    const stored = this.withServerMetadata(applied, existing);
    stored['metadata'].managedFields = [{ manager: fieldManager, operation: 'Apply', apiVersion: body['apiVersion'], fieldsType: 'FieldsV1' }];
    this.objects.set(key, stored);
    this.afterWrite(stored);
    sendJson(res, existing === undefined ? 201 : 200, stored);
  }

  /** PUT: replaces an object; a stale metadata.resourceVersion gets 409 Conflict, as optimistic concurrency requires. */
  private replaceObject(res: ServerResponse, type: ResourceType, namespace: string | undefined, name: string, body: StoredObject): void {
    const problem = checkIdentity(type, namespace, name, body);
    if (problem !== undefined) return sendStatus(res, 400, 'BadRequest', problem);
    const key = this.key(type, namespace, name);
    const existing = this.objects.get(key);
    if (existing === undefined) return sendStatus(res, 404, 'NotFound', `${type.resource} "${name}" not found`);
    const expected = body['metadata'].resourceVersion;
    if (expected !== undefined && expected !== existing['metadata'].resourceVersion) {
      return sendStatus(res, 409, 'Conflict', `Operation cannot be fulfilled on ${type.resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    const stored = this.withServerMetadata(structuredClone(body), existing);
    this.objects.set(key, stored);
    sendJson(res, 200, stored);
  }

  private deleteObject(res: ServerResponse, type: ResourceType, namespace: string | undefined, name: string, options?: StoredObject): void {
    const key = this.key(type, namespace, name);
    const object = this.objects.get(key);
    if (object === undefined) return sendStatus(res, 404, 'NotFound', `${type.resource} "${name}" not found`);
    const uid = options?.['preconditions']?.uid;
    if (uid !== undefined && uid !== object['metadata'].uid) {
      return sendStatus(res, 409, 'Conflict', `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${object['metadata'].uid}`);
    }
    this.objects.delete(key);
    if (type.kind === 'Node' || type.kind === 'DaemonSet') this.reconcileDaemonSets();
    sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success', details: { name, kind: type.resource } });
  }

  private podLog(res: ServerResponse, namespace: string, pod: string, query: URLSearchParams): void {
    if (this.get('v1', 'Pod', namespace, pod) === undefined) return sendStatus(res, 404, 'NotFound', `pods "${pod}" not found`);
    const container = query.get('container') ?? '';
    let lines = (this.logs.get(`${namespace}/${pod}/${container}`) ?? '').split('\n').filter((line) => line.length > 0);
    const tail = query.get('tailLines');
    if (tail !== null) lines = lines.slice(-Number(tail));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(lines.map((line) => line + '\n').join(''));
  }

  /** Serves the v4.channel.k8s.io port-forward protocol: channel 0 carries data and channel 1 errors, and each first sends the port. */
  private portForward(ws: WebSocket, namespace: string, pod: string, port: number): void {
    const target = this.forwards.get(`${namespace}/${pod}:${port}`);
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    ws.send(Buffer.concat([Buffer.from([0]), portBytes]));
    ws.send(Buffer.concat([Buffer.from([1]), portBytes]));
    if (target === undefined || this.get('v1', 'Pod', namespace, pod) === undefined) {
      ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(`pod ${pod} has no forwardable port ${port}`)]));
      ws.close();
      return;
    }
    const upstream = connectTcp(target.port, target.host);
    upstream.on('data', (chunk: Buffer) => ws.send(Buffer.concat([Buffer.from([0]), chunk])));
    upstream.on('close', () => ws.close());
    upstream.on('error', (error) => {
      if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(error.message)]));
      ws.close();
    });
    ws.on('message', (data: Buffer) => {
      if (data.length > 0 && data[0] === 0) upstream.write(data.subarray(1));
    });
    ws.on('close', () => upstream.end());
  }

  // Store helpers.

  private withServerMetadata(object: StoredObject, existing: StoredObject | undefined): StoredObject {
    const metadata = (object['metadata'] ??= {});
    const specChanged = existing === undefined || JSON.stringify(existing['spec']) !== JSON.stringify(object['spec']);
    metadata.uid = existing?.['metadata'].uid ?? randomUUID();
    metadata.creationTimestamp = existing?.['metadata'].creationTimestamp ?? new Date().toISOString();
    metadata.generation = (existing?.['metadata'].generation ?? 0) + (specChanged ? 1 : 0);
    metadata.resourceVersion = String(++this.resourceVersion);
    return object;
  }

  /** Plays the StatefulSet controller's part that tests need: claims from volumeClaimTemplates, and pod NAME-0. */
  private afterWrite(object: StoredObject): void {
    if (object['kind'] === 'StatefulSet') {
      const namespace = object['metadata'].namespace;
      const name = object['metadata'].name;
      for (const template of object['spec']?.volumeClaimTemplates ?? []) {
        const claimName = `${template.metadata.name}-${name}-0`;
        if (this.get('v1', 'PersistentVolumeClaim', namespace, claimName) === undefined) {
          this.put({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: claimName, namespace, labels: template.metadata.labels }, spec: template.spec, status: { phase: 'Bound' } });
        }
      }
      if (this.get('v1', 'Pod', namespace, `${name}-0`) === undefined) {
        this.put({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-0`, namespace, labels: object['spec'].template.metadata.labels }, spec: object['spec'].template.spec, status: { phase: 'Pending' } });
      }
      const status = object['status'] ?? {};
      // As the controller does, a new generation gets a new update revision; the rollout is complete only
      // when setStatefulSetReady makes it the current revision too.
      object['status'] = { ...status, observedGeneration: object['metadata'].generation, replicas: 1, readyReplicas: status.readyReplicas ?? 0, updateRevision: `${name}-rev${object['metadata'].generation}` };
    }
    if (object['kind'] === 'DaemonSet' || object['kind'] === 'Node') this.reconcileDaemonSets();
    this.onObjectWritten?.(object);
  }

  /**
   * Plays the DaemonSet controller: one pod per matching Node (named NAME-RANDOM, with `spec.nodeName`
   * and a controller ownerReference), pods on vanished or no longer matching nodes and of deleted
   * DaemonSets removed, and the status counts recomputed.
   */
  private reconcileDaemonSets(): void {
    const daemonSets = this.all().filter((object) => object['kind'] === 'DaemonSet');
    const nodes = this.list('v1', 'Node');
    const created: StoredObject[] = [];
    for (const pod of this.all().filter((object) => object['kind'] === 'Pod')) {
      const owner = (pod['metadata'].ownerReferences ?? []).find((reference: StoredObject) => reference.kind === 'DaemonSet');
      if (owner === undefined) continue;
      const daemonSet = daemonSets.find((candidate) => candidate['metadata'].uid === owner.uid);
      const node = nodes.find((candidate) => candidate['metadata'].name === pod['spec'].nodeName);
      if (daemonSet === undefined || node === undefined || !selectsNode(daemonSet, node)) {
        this.objects.delete(this.key(typeForKind('v1', 'Pod'), pod['metadata'].namespace, pod['metadata'].name));
      }
    }
    for (const daemonSet of daemonSets) {
      const { namespace, name, uid } = daemonSet['metadata'];
      const owned = this.list('v1', 'Pod', namespace).filter((pod) => (pod['metadata'].ownerReferences ?? []).some((reference: StoredObject) => reference.uid === uid));
      const selected = nodes.filter((node) => selectsNode(daemonSet, node));
      for (const node of selected) {
        if (owned.some((pod) => pod['spec'].nodeName === node['metadata'].name)) continue;
        const template = daemonSet['spec'].template;
        const pod = this.put({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name: `${name}-${randomUUID().slice(0, 5)}`,
            namespace,
            labels: template.metadata?.labels ?? {},
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name, uid, controller: true, blockOwnerDeletion: true }],
          },
          spec: { ...structuredClone(template.spec), nodeName: node['metadata'].name },
          status: { phase: 'Pending' },
        });
        owned.push(pod);
        created.push(pod);
      }
      const ready = owned.filter((pod) => (pod['status']?.conditions ?? []).some((condition: StoredObject) => condition.type === 'Ready' && condition.status === 'True'));
      daemonSet['status'] = {
        observedGeneration: daemonSet['metadata'].generation,
        desiredNumberScheduled: selected.length,
        currentNumberScheduled: owned.length,
        numberReady: ready.length,
        numberAvailable: ready.length,
        numberUnavailable: selected.length - ready.length,
        numberMisscheduled: 0,
        updatedNumberScheduled: owned.length,
      };
    }
    for (const pod of created) this.onObjectWritten?.(pod);
  }

  private key(type: ResourceType, namespace: string | undefined, name: string): string {
    return `${this.prefix(type, namespace)}${name}`;
  }

  private prefix(type: ResourceType, namespace: string | undefined): string {
    return `${type.group}/${type.version}/${type.resource}/${type.namespaced ? (namespace ?? '') : ''}/`;
  }
}

function typeForKind(apiVersion: string, kind: string): ResourceType {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const type = RESOURCE_TYPES.find((candidate) => candidate.group === group && candidate.version === version && candidate.kind === kind);
  if (type === undefined) throw new Error(`the test API server does not serve ${apiVersion} ${kind}`);
  return type;
}

function groupVersion(type: ResourceType): string {
  return type.group === '' ? type.version : `${type.group}/${type.version}`;
}

function parseResourcePath(path: string): { type: ResourceType; namespace?: string; name?: string; subresource?: string } | undefined {
  const match = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(path);
  if (match !== null) {
    const group = match[2] ?? '';
    const version = match[1] ?? match[3]!;
    const type = RESOURCE_TYPES.find((candidate) => candidate.group === group && candidate.version === version && candidate.resource === match[5]);
    if (type !== undefined) return { type, namespace: match[4], name: match[6], subresource: match[7] };
  }
  const namespaceMatch = /^\/api\/v1\/namespaces(?:\/([^/]+))?$/.exec(path);
  if (namespaceMatch !== null) return { type: typeForKind('v1', 'Namespace'), name: namespaceMatch[1] };
  return undefined;
}

function checkIdentity(type: ResourceType, namespace: string | undefined, name: string | undefined, body: StoredObject | undefined): string | undefined {
  if (body === undefined || typeof body !== 'object') return 'the request has no object body';
  if (body['apiVersion'] !== groupVersion(type) || body['kind'] !== type.kind) {
    return `the body is ${body['apiVersion']} ${body['kind']}, but the URL names ${groupVersion(type)} ${type.kind}`;
  }
  const metadata = body['metadata'] ?? {};
  if (typeof metadata.name !== 'string' || metadata.name === '') return 'metadata.name is required';
  if (name !== undefined && metadata.name !== name) return `metadata.name "${metadata.name}" does not match the URL name "${name}"`;
  if (type.namespaced && metadata.namespace !== undefined && metadata.namespace !== namespace) {
    return `metadata.namespace "${metadata.namespace}" does not match the URL namespace "${namespace}"`;
  }
  return undefined;
}

/** Whether every label of the DaemonSet's pod `nodeSelector` is on the node. */
function selectsNode(daemonSet: StoredObject, node: StoredObject): boolean {
  const selector: Record<string, string> = daemonSet['spec'].template.spec?.nodeSelector ?? {};
  const labels: Record<string, string> = node['metadata'].labels ?? {};
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

function fieldValue(object: StoredObject, path: string): unknown {
  return path.split('.').reduce<any>((value, key) => (value === undefined || value === null ? undefined : value[key]), object);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}
