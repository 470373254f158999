import type { CasError } from '../errors/cas-error.js';
import type { Logger } from '../logging/logger.js';

/**
 * Keeps a started CAS running until SIGTERM or SIGINT, then closes it and resolves. When `fatal` resolves
 * first (a failed snapshot, for example), closes the CAS and rejects with that error, so the caller exits
 * with the error's code. The signal handlers stay installed while the CAS stops, so a repeated signal
 * cannot kill the process before the database is closed.
 */
export function runUntilStopped(
  cas: { close(reason: 'signal' | 'fatal'): Promise<void> },
  fatal: Promise<CasError>,
  logger: Logger,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    void fatal.then((error) => cas.close('fatal').then(() => reject(error), reject));
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.info({ signal }, 'received signal while stopping; still waiting for requests in flight');
        return;
      }
      stopping = true;
      logger.info({ signal }, 'received signal');
      cas.close('signal').then(resolve, reject);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
