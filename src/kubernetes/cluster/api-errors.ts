import { ApiException } from '@kubernetes/client-node';
import { CasError } from '../../errors/cas-error.js';

/** Returns the HTTP status of a failed Kubernetes API call, or undefined when the call got no response. */
export function apiStatus(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

export function isNotFound(error: unknown): boolean {
  return apiStatus(error) === 404;
}

/** Wraps a failed API call as KUBE_API_ERROR, with the API server's own message when there is one. */
export function kubeApiError(action: string, error: unknown): CasError {
  if (error instanceof CasError) return error;
  let reason = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiException) {
    const detail = parseStatus(error.body) ?? STATUS_HINTS[error.code];
    reason = `HTTP ${error.code}${detail === undefined ? '' : `: ${detail}`}`;
  }
  return new CasError('KUBE_API_ERROR', `${action} failed: ${reason}`, { cause: error });
}

/** Explanations for statuses whose responses client-node does not pass on (it drops the 401 body). */
const STATUS_HINTS: Record<number, string> = {
  401: 'Unauthorized: the API server rejected the credentials of the kubeconfig user; log in again or pass --context',
  403: 'Forbidden: the kubeconfig user lacks this permission in the namespace',
};

function parseStatus(body: unknown): string | undefined {
  try {
    const status = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown };
    return typeof status?.message === 'string' ? status.message : undefined;
  } catch {
    return typeof body === 'string' && body.length > 0 ? body.slice(0, 300) : undefined;
  }
}
