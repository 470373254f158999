import { spawnSync } from 'node:child_process';
import { casCliPath } from '../../src/testing/paths.js';
import { missingFigure, type BenchOptions, type FigureResult } from '../harness.js';

const TITLE = 'Failover: kill -9 of the primary to the first acknowledged write on the new primary';

/**
 * Figure 6: failover time against the lease period. It needs a primary lease and a standby that takes
 * over, which `cas serve` does not have yet; the figure reports which part is missing instead of a number.
 */
export async function failoverFigure(options: BenchOptions): Promise<FigureResult> {
  options.progress('figure 6: checking whether cas serve has a primary lease');
  const help = spawnSync(process.execPath, [casCliPath(), 'serve', '--help'], { encoding: 'utf8' });
  if (help.status !== 0) throw new Error(`cas serve --help exited with ${help.status}: ${help.stderr}`);
  if (!/lease/i.test(help.stdout)) {
    return missingFigure(6, TITLE, 'high availability (a primary lease and standby take-over in `cas serve`)');
  }
  // TODO: cas serve now names a lease; add the local multi-node harness: start a primary and a standby, kill -9
  // the primary, and time until a session write succeeds on the new primary.
  return missingFigure(6, TITLE, 'the local multi-node failover harness in bench/figures/failover.ts');
}
