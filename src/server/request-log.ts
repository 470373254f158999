import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from '../logging/logger.js';

/**
 * Logs one line per request, when the response is sent: method, URL, status code, response time in
 * milliseconds and the client address, plus the request id that fastify binds to `request.log` and the
 * fields a route binds (session, service). Fastify's default logs a second line when a request arrives;
 * here that line is at level debug. Fastify's other log lines (error handler, stream errors) are unchanged.
 */
export class RequestLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    const log = requestLogger(request);
    if (log.isLevelEnabled('debug')) log.debug({ method: request.method, url: request.url }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const fields = { method: request.method, url: request.url, statusCode: reply.statusCode, responseTime: reply.elapsedTime, remoteAddress: request.ip };
    // request.log, not reply.log: a route that replaces request.log with a child leaves reply.log unchanged.
    if (error) request.log.error({ ...fields, err: error }, 'request errored');
    else request.log.info(fields, 'request completed');
  }
}

/**
 * Returns the request's own pino logger. The CAS passes its pino logger to fastify (`loggerInstance`), and
 * fastify creates one child of it per request, so binding fields to it affects only that request.
 */
export function requestLogger(request: FastifyRequest): Logger {
  return request.log as Logger;
}
