/**
 * What a session requires of a service's evidence, after the session parser has normalised the
 * SCONE 0.3 spellings (`mrenclaves: [...]`, `attestation: {mrenclave: ...}`, lists of variants) into one
 * shape. The policy module produces these; the attestation module evaluates evidence against them.
 *
 * A service's attestation is a list of variants: evidence is accepted when it satisfies at least one.
 * Hex values are lower-case without a 0x prefix.
 */
export type AttestationVariant =
  | { kind: 'mrenclave'; mrenclave: string[] }
  | {
      kind: 'signer';
      mrsigner: string;
      isvprodid?: number;
      isvsvn?: number;
      isvsvnMin?: number;
      isvsvnMax?: number;
    }
  | {
      kind: 'tdx';
      mrtd?: string[];
      rtmr0?: string;
      rtmr1?: string;
      rtmr2?: string;
      rtmr3?: string;
      /** TD attributes as 16 hex characters (8 bytes); compared for equality. */
      tdAttributes?: string;
      /** XFAM as 16 hex characters (8 bytes); compared for equality. */
      xfam?: string;
    }
  | {
      kind: 'snp';
      measurement?: string[];
      /** Guest policy as a number; compared for equality. */
      policy?: bigint | number;
      /** HOST_DATA as 64 hex characters. */
      hostData?: string;
    };

/** TCB tolerances of the SCONE session language (`security.attestation.tolerate`). */
export const TOLERANCES = [
  'outdated-tcb',
  'software-hardening-needed',
  'insecure-configuration',
  'hyperthreading',
  'debug-mode',
] as const;
export type Tolerance = (typeof TOLERANCES)[number];

/** The session-wide security settings that apply to every service's evidence. */
export interface AttestationSecurity {
  /** `none` admits simulated evidence; `hardware` (the default) requires genuine TEE evidence. */
  mode: 'none' | 'hardware';
  tolerate: Tolerance[];
  /** Advisory ids to ignore, or '*' for all. */
  ignoreAdvisories: string[] | '*';
}
