#!/usr/bin/env node
import 'reflect-metadata';
import { Command } from 'commander';
import { runCli } from './run.js';
import { packageVersion } from '../config/version.js';
import { register as registerAudit } from './commands/audit.js';
import { register as registerAttest } from './commands/attest.js';
import { register as registerConfig } from './commands/config.js';
import { register as registerProvision } from './commands/provision.js';
import { register as registerQuote } from './commands/quote.js';
import { register as registerRun } from './commands/run.js';
import { register as registerServe } from './commands/serve.js';
import { register as registerSession } from './commands/session.js';
import { register as registerBackup } from './commands/backup.js';
import { register as registerSnapshot } from './commands/snapshot.js';
import { register as registerWatchdog } from './commands/watchdog.js';
import { register as registerStatus } from './commands/status.js';
import { register as registerSettings } from './commands/settings.js';

/**
 * Entry point of the `cas` program. Each command group lives in `src/cli/commands/<group>.ts` and exports
 * `register(program)`; add one line below for a new group.
 */
const program = new Command('cas')
  .description('Configuration and Attestation Service: server and client commands')
  .version(packageVersion(), '-V, --version', 'print the version of cas')
  .showHelpAfterError();

const groups: Array<(program: Command) => void> = [registerServe, registerProvision, registerAttest, registerSession, registerConfig, registerRun, registerAudit, registerQuote, registerBackup, registerSnapshot, registerStatus, registerWatchdog, registerSettings];

await runCli(program, groups);
