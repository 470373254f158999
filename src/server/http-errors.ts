import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodError } from 'zod';
import { CasError, isCasError } from '../errors/cas-error.js';
import { HTTP_STATUS, isClientVisible } from '../errors/http-status.js';

/** Body of every error response: `{ error: { code, message, details } }`. */
export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/** Turns a zod failure on a request part into INVALID_ARGUMENT naming each field and reason. */
export function invalidRequest(part: 'body' | 'params' | 'query', error: ZodError): CasError {
  const problems = error.issues.map((issue) => ({ path: [part, ...issue.path.map(String)].join('.'), message: issue.message }));
  return new CasError('INVALID_ARGUMENT', `invalid request ${part}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, {
    details: { problems },
  });
}

/**
 * Maps any error thrown by a route to a status and an ErrorBody. CasErrors keep their message unless the
 * status is an internal one; fastify's own errors (body too large, bad JSON, bad content type) become the
 * matching CasError; anything else is logged and gets a generic message.
 */
export function toErrorResponse(error: unknown, bodyLimitBytes: number): { status: number; body: ErrorBody; internal: boolean } {
  const casError = isCasError(error) ? error : fromFastifyError(error, bodyLimitBytes);
  if (casError === undefined) {
    return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error; see the CAS log', details: {} } }, internal: true };
  }
  const status = HTTP_STATUS[casError.code];
  if (!isClientVisible(status)) {
    return {
      status,
      body: { error: { code: casError.code, message: 'internal error; see the CAS log', details: {} } },
      internal: true,
    };
  }
  return { status, body: { error: { code: casError.code, message: casError.message, details: casError.details ?? {} } }, internal: false };
}

function fromFastifyError(error: unknown, bodyLimitBytes: number): CasError | undefined {
  const fastifyError = error as Partial<FastifyError>;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CasError('BODY_TOO_LARGE', `request body is larger than the limit of ${bodyLimitBytes} bytes; split the request or raise the limit`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CasError('INVALID_ARGUMENT', 'unsupported content type; send application/json');
    case 'FST_ERR_BAD_URL':
      return new CasError('INVALID_ARGUMENT', 'the request path is not valid percent-encoding; encode a session name with encodeURIComponent');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new CasError('INVALID_ARGUMENT', 'a path parameter is longer than 1024 characters; session names have at most 256');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new CasError('INVALID_ARGUMENT', 'the request body is empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new CasError('INVALID_ARGUMENT', `the request body is not valid JSON: ${fastifyError.message ?? ''}`.trim());
    default:
      break;
  }
  if (error instanceof SyntaxError && (error as { statusCode?: number }).statusCode === 400) {
    return new CasError('INVALID_ARGUMENT', `the request body is not valid JSON: ${error.message}`);
  }
  return undefined;
}

/** Creates the fastify error handler: logs internal errors with the request id and sends the ErrorBody. */
export function createErrorHandler(bodyLimitBytes: number): (error: unknown, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    const response = toErrorResponse(error, bodyLimitBytes);
    if (response.internal) {
      request.log.error({ err: error }, 'request failed with an internal error');
    } else {
      request.log.info({ code: response.body.error.code, status: response.status }, 'request rejected');
    }
    void reply.status(response.status).send(response.body);
  };
}
