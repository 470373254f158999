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
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  const { quick, only } = parseArguments(argv);
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

const USAGE = `Usage: npm run bench [-- [--quick] [--only N[,N...]]]

Runs the benchmark figures in order and writes docs/benchmarks.md.

  --quick          shorter runs and smaller data sets (about a minute instead of five to ten)
  --only N,M       run only figures N and M (1 to ${FIGURES.length}); prints their page on stdout and
                   leaves docs/benchmarks.md unchanged
  -h, --help       print this help

Environment: CAS_BENCH_CPU_PROF=DIR writes a V8 CPU profile of every cas serve process into DIR.
`;

/** Parses the suite's arguments; an unknown argument or a figure number out of range is an error. */
function parseArguments(argv: string[]): { quick: boolean; only: Set<number> | undefined } {
  let quick = false;
  let only: Set<number> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === '--quick') {
      quick = true;
    } else if (argument === '--only') {
      const list = argv[++i] ?? '';
      only = new Set(list.split(',').map(Number));
      if (list === '' || [...only].some((n) => !FIGURES.some((figure) => figure.number === n))) {
        throw new Error(`invalid --only value "${list}": expected figure numbers from 1 to ${FIGURES.length}, separated by commas`);
      }
    } else {
      throw new Error(`unknown argument "${argument}"; see npm run bench -- --help`);
    }
  }
  return { quick, only };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
