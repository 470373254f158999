import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../logging/logger.js';

/** The fastify instance of the CAS server: HTTPS with the project's pino logger. */
export type CasApp = FastifyInstance<HttpsServer, IncomingMessage, ServerResponse, Logger>;
