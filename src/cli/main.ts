#!/usr/bin/env node
import 'reflect-metadata';
import { Command } from 'commander';
import { runCli } from './run.js';
import { register as registerAudit } from './commands/audit.js';
import { register as registerQuote } from './commands/quote.js';

/**
 * Entry point of the `cas` program. Each command group lives in `src/cli/commands/<group>.ts` and exports
 * `register(program)`; add one line below for a new group.
 */
const program = new Command('cas')
  .description('Configuration and Attestation Service: server and client commands')
  .showHelpAfterError();

const groups: Array<(program: Command) => void> = [registerAudit, registerQuote];

await runCli(program, groups);
