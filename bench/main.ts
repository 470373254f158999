import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { repoRoot } from '../src/testing/paths.js';
import { attestationThroughputFigure } from './figures/attestation-throughput.js';
import { durableWritesFigure } from './figures/durable-writes.js';
import { failoverFigure } from './figures/failover.js';
import { quoteVerificationFigure } from './figures/quote-verification.js';
import { snapshotFigure } from './figures/snapshot.js';
import { startupFigure } from './figures/startup.js';
import { machineInfo, type BenchOptions, type Figure, type FigureResult } from './harness.js';
import { renderPage } from './report.js';

const FIGURES: Array<{ number: number; title: string; run: Figure }> = [
  { number: 1, title: 'Attestation and configuration delivery over HTTPS', run: attestationThroughputFigure },
  { number: 2, title: 'DCAP quote verification with a warm collateral cache', run: quoteVerificationFigure },
  { number: 3, title: 'Durable session writes', run: durableWritesFigure },
  { number: 4, title: 'Snapshot of a database', run: snapshotFigure },
  { number: 5, title: 'Start-up time and resident memory with many sessions', run: startupFigure },
  { number: 6, title: 'Failover to a new primary', run: failoverFigure },
];

/**
 * `npm run bench [-- --quick] [-- --only N,M]`: runs the benchmark figures in order and writes
 * docs/benchmarks.md. A figure that fails is reported on the page with its error, never with a number.
 */
async function main(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const onlyIndex = argv.indexOf('--only');
  const only = onlyIndex >= 0 ? new Set((argv[onlyIndex + 1] ?? '').split(',').map(Number)) : undefined;
  const output = join(repoRoot(), 'docs', 'benchmarks.md');
  const started = performance.now();
  const progress = (message: string): void => {
    process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
  };
  const options: BenchOptions = { quick, progress };
  const machine = machineInfo();
  const date = new Date();
  progress(`${quick ? 'quick' : 'full'} run on ${machine.cores} cores, ${machine.memoryGiB.toFixed(1)} GiB, Node ${machine.nodeVersion}, load ${machine.loadAverage.toFixed(2)}`);

  const results: FigureResult[] = [];
  for (const figure of FIGURES) {
    if (only !== undefined && !only.has(figure.number)) continue;
    progress(`figure ${figure.number}: ${figure.title}`);
    const figureStarted = performance.now();
    try {
      const result = await figure.run(options);
      results.push(result);
      const checks = result.missing !== undefined ? `not measured: ${result.missing} missing` : result.checks.map((c) => `${c.label} ${c.value} (${c.met ? 'met' : 'missed'})`).join('; ');
      progress(`figure ${figure.number} done in ${((performance.now() - figureStarted) / 1000).toFixed(1)} s: ${checks}`);
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      progress(`figure ${figure.number} failed: ${message}`);
      results.push({ number: figure.number, title: figure.title, values: [], checks: [], method: [], notes: [], failed: firstLine(message) });
    }
  }

  const totalSeconds = (performance.now() - started) / 1000;
  const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  const page = renderPage({ machine, date, command, quick, totalSeconds, loadAverageAtEnd: loadavg()[0] ?? 0, results });
  if (only !== undefined) {
    // A partial run must not replace the page of a whole run.
    process.stdout.write(page);
    progress(`printed the page of figures ${[...only].join(', ')} after ${totalSeconds.toFixed(0)} s; docs/benchmarks.md is unchanged`);
    return;
  }
  writeFileSync(output, page);
  progress(`wrote ${output} after ${totalSeconds.toFixed(0)} s`);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
