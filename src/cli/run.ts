import type { Command } from 'commander';
import { CasError } from '../errors/cas-error.js';
import { EXIT, exitCodeFor } from '../errors/exit-codes.js';

/**
 * Registers the command groups, parses argv and turns every failure into one line on stderr and the
 * documented exit code. Commands throw CasError; nothing below this function calls process.exit on error.
 */
export async function runCli(program: Command, groups: Array<(program: Command) => void>): Promise<void> {
  program.exitOverride();
  for (const register of groups) register(program);
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    process.exitCode = reportError(error);
  }
}

function reportError(error: unknown): number {
  const commanderCode = (error as { code?: string }).code;
  if (typeof commanderCode === 'string' && commanderCode.startsWith('commander.')) {
    // Commander has already printed help or the usage error.
    const helpShown = commanderCode === 'commander.helpDisplayed' || commanderCode === 'commander.help' || commanderCode === 'commander.version';
    return helpShown ? EXIT.OK : EXIT.USAGE;
  }
  if (error instanceof CasError) {
    process.stderr.write(`error: ${error.message}\n`);
    return exitCodeFor(error.code);
  }
  process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  return EXIT.FAILURE;
}
