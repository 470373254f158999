import type { FigureResult, MachineInfo } from './harness.js';

export interface PageInput {
  machine: MachineInfo;
  date: Date;
  command: string;
  quick: boolean;
  totalSeconds: number;
  /** One-minute load average when the suite finished. */
  loadAverageAtEnd: number;
  results: FigureResult[];
}

/** Renders docs/benchmarks.md: the machine, a summary table, then one section per figure. */
export function renderPage(input: PageInput): string {
  const { machine, date, command, quick, totalSeconds, loadAverageAtEnd, results } = input;
  const busy = Math.max(machine.loadAverage, loadAverageAtEnd) > machine.cores;
  const lines: string[] = [
    '# Benchmarks',
    '',
    'This page is written by `npm run bench` (bench/main.ts); do not edit it by hand. Each figure is compared',
    'with a limit measured in the same run on the same machine, because absolute times on shared machines',
    'drift. `npm run bench -- --quick` runs a shorter version with smaller data sets; `-- --only 1,3` runs some',
    'figures and prints their page on stdout without writing this file; `CAS_BENCH_CPU_PROF=DIR` writes a V8',
    'CPU profile of every `cas serve` process the suite starts into DIR. Each figure lives in',
    '`bench/figures/`, and the shared timers, percentiles and server spawning in `bench/harness.ts`.',
    '',
    '## Run',
    '',
    `| | |`,
    `| --- | --- |`,
    `| command | \`${command}\`${quick ? ' (quick: shorter runs, smaller data sets)' : ''} |`,
    `| date | ${date.toISOString()} |`,
    `| machine | ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB.toFixed(1)} GiB memory, ${machine.os} |`,
    `| Node.js | ${machine.nodeVersion} |`,
    `| load average (one minute) | ${machine.loadAverage.toFixed(2)} at start, ${loadAverageAtEnd.toFixed(2)} at end |`,
    `| duration | ${totalSeconds.toFixed(0)} s |`,
    '',
    busy
      ? `Other work ran on this machine during the run: the load average exceeded its ${machine.cores} cores. Absolute numbers drift between runs on a shared machine. The ratios to limits measured in the same run drift less, but still do, because the load changes during a run.`
      : `The load average stayed at or below the ${machine.cores} cores during the run. Absolute numbers still drift between machines, which is why each figure is compared with a limit measured in the same run.`,
    '',
    '## Summary',
    '',
    '| # | measured | result | target | met |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const result of results) {
    if (result.missing !== undefined) {
      lines.push(`| ${result.number} | ${result.title} | not measured yet: ${result.missing} missing | | |`);
    } else if (result.failed !== undefined) {
      lines.push(`| ${result.number} | ${result.title} | not measured: the run failed (${escapeCell(result.failed)}) | | |`);
    } else {
      for (const check of result.checks) {
        lines.push(`| ${result.number} | ${check.label} | ${check.value} | ${check.target} | ${check.met ? 'yes' : 'no'} |`);
      }
    }
  }
  lines.push('');
  if (results.some((result) => result.checks.some((check) => !check.met))) {
    lines.push('Where a target is missed, the notes of its figure state what was fixed after profiling, the remaining gap and its cause, found by measurement or profiling.', '');
  }

  for (const result of results) {
    lines.push(`## ${result.number}. ${result.title}`, '');
    if (result.missing !== undefined) {
      lines.push(`Not measured yet: ${result.missing} missing.`, '');
      continue;
    }
    if (result.failed !== undefined) {
      lines.push(`Not measured: the run failed with \`${result.failed}\`.`, '');
      continue;
    }
    lines.push('| measured | value |', '| --- | --- |');
    for (const value of result.values) lines.push(`| ${value.label} | ${value.value} |`);
    for (const value of result.limit ?? []) lines.push(`| limit: ${value.label} | ${value.value} |`);
    for (const check of result.checks) lines.push(`| **${check.label}** (target ${check.target}) | **${check.value}** (${check.met ? 'met' : 'missed'}) |`);
    lines.push('');
    if (result.method.length > 0) {
      lines.push('How:', '');
      for (const line of result.method) lines.push(`- ${line}`);
      lines.push('');
    }
    if (result.notes.length > 0) {
      lines.push('Notes:', '');
      for (const line of result.notes) lines.push(`- ${line}`);
      lines.push('');
    }
  }
  return lines.join('\n');
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}
