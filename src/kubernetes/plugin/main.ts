#!/usr/bin/env node
import 'reflect-metadata';
import { Command } from 'commander';
import { runCli } from '../../cli/run.js';
import { registerCasCommand } from './command.js';

/**
 * Entry point of the kubectl plugin `kubectl-provision`. kubectl finds it on PATH and runs
 * `kubectl-provision cas NAME ...` for `kubectl provision cas NAME ...`.
 */
const program = new Command('kubectl provision')
  .description('Deploy and provision services on Kubernetes')
  .showHelpAfterError();

await runCli(program, [(root) => registerCasCommand(root, { stdout: process.stdout, stderr: process.stderr })]);
