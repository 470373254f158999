import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Field names whose values are never logged. Core modules return results and the edges log them; this list
 * is the last line of defence if a secret-bearing object reaches a log call anyway.
 */
export const REDACTED_PATHS = [
  'token',
  'provisioningToken',
  'secret',
  'secrets',
  'value',
  'privateKey',
  'password',
  'dcapApiKey',
  'apiKey',
  'databaseKey',
  'key',
  '*.token',
  '*.secret',
  '*.secrets',
  '*.value',
  '*.privateKey',
  '*.password',
  '*.dcapApiKey',
  '*.databaseKey',
  'req.headers.authorization',
  'req.headers["ocp-apim-subscription-key"]',
  'headers["ocp-apim-subscription-key"]',
];

/** Creates the process logger: JSON lines on the given stream (stdout by default), secrets redacted. */
export function createLogger(options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'cas',
      level: options.level ?? process.env['CAS_LOG_LEVEL'] ?? 'info',
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    (options.destination ?? process.stdout) as pino.DestinationStream,
  );
}

/** A logger that drops everything, for pure modules under test and CLI commands without --verbose. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
