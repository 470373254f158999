import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { attestCas } from '../../client/attest.js';
import { clientDcapApiKey, parseCasExpectations } from '../../client/cas-evidence.js';
import { outputFormat, printResult } from '../../client/output.js';

interface AttestFlags {
  cas?: string;
  acceptSimulation: boolean;
  output?: string;
  expect: string[];
  tolerate?: string;
  ignoreAdvisories?: string;
  pcsUrl?: string;
  pccsUrl?: string;
  intelRootCa?: string;
  amdArk?: string;
  kdsUrl?: string;
}

/** `cas attest`: verifies the CAS's evidence and pins its certificate in CAS_HOME. */
export function register(program: Command): void {
  program
    .command('attest')
    .description('verify the evidence of a CAS and pin its certificate in CAS_HOME for every later command')
    .option('--cas <url>', 'CAS URL (default CAS_URL or https://127.0.0.1:8081)')
    .option('--accept-simulation', 'accept a CAS in simulation mode, whose evidence proves nothing (development and tests only)', false)
    .option('--output <format>', 'text or json', 'text')
    .option('--expect <key=hex>', 'hardware CAS: an accepted mrenclave, mrsigner, mrtd or measurement (repeatable)', (value: string, list: string[]) => [...list, value], [] as string[])
    .option('--tolerate <list>', 'hardware CAS: comma-separated TCB tolerances (outdated-tcb, software-hardening-needed, insecure-configuration, hyperthreading, debug-mode)')
    .option('--ignore-advisories <list>', 'hardware CAS: comma-separated Intel advisory ids to ignore, or *')
    .option('--pcs-url <url>', 'hardware CAS: Intel PCS base URL (default https://api.trustedservices.intel.com; the DCAP API key comes from CAS_DCAP_API_KEY)')
    .option('--pccs-url <url>', 'hardware CAS: take Intel collateral from this PCCS instead')
    .option('--intel-root-ca <file>', 'hardware CAS: PEM of the trusted Intel SGX Root CA (default: the embedded one)')
    .option('--amd-ark <file>', 'hardware CAS: PEM of the pinned AMD ARK, needed for SEV-SNP evidence')
    .option('--kds-url <url>', 'hardware CAS: AMD KDS base URL (default https://kdsintf.amd.com)')
    .action(async (flags: AttestFlags) => {
      const format = outputFormat(flags.output);
      const dcapApiKey = clientDcapApiKey();
      const result = await attestCas({
        ...(flags.cas === undefined ? {} : { cas: flags.cas }),
        acceptSimulation: flags.acceptSimulation,
        hardware: {
          expectations: parseCasExpectations(flags.expect, flags.tolerate, flags.ignoreAdvisories),
          collateral: {
            ...(flags.pcsUrl === undefined ? {} : { pcsUrl: flags.pcsUrl }),
            ...(flags.pccsUrl === undefined ? {} : { pccsUrl: flags.pccsUrl }),
            ...(dcapApiKey === undefined ? {} : { dcapApiKey }),
            ...(flags.intelRootCa === undefined ? {} : { intelRootCaPem: readFileSync(flags.intelRootCa, 'utf8') }),
            ...(flags.amdArk === undefined ? {} : { amdArkPem: readFileSync(flags.amdArk, 'utf8') }),
            ...(flags.kdsUrl === undefined ? {} : { kdsUrl: flags.kdsUrl }),
          },
        },
      });
      const note =
        result.mode === 'simulation'
          ? `WARNING: the CAS at ${result.url} is SIMULATED; its evidence proves nothing. Pinned certificate SHA-256:`
          : `attested the CAS at ${result.url}; pinned certificate SHA-256:`;
      printResult(format, result, result.certificateSha256, note);
    });
}
