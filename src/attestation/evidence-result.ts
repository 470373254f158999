/**
 * The outcome of verifying genuine TEE evidence: who signed it is settled, and what remains is for the
 * session policy (`evaluateEvidence`) and the report-data binding (`checkBinding`) to judge.
 * Hex values are lower-case without a 0x prefix.
 */
export interface EvidenceResult {
  teeType: 'sgx' | 'tdx' | 'snp';
  /**
   * Intel TCB status after converging the platform, TDX module and QE statuses (`UpToDate`,
   * `SWHardeningNeeded`, `ConfigurationNeeded`, `ConfigurationAndSWHardeningNeeded`, `OutOfDate`,
   * `OutOfDateConfigurationNeeded`, `TDRelaunchAdvised`, `TDRelaunchAdvisedConfigurationNeeded`,
   * `Revoked`). For SEV-SNP it is `NotEvaluated`: AMD publishes no TCB status, and the VCEK only certifies
   * the reported TCB.
   */
  tcbStatus: string;
  advisoryIds: string[];
  measurements: Measurements;
  /** The 64 bytes of report data that the TEE signed along with the measurements. */
  reportData: Buffer;
}

export interface Measurements {
  /** True when the enclave, TD or guest allows debugging, so its memory is not confidential. */
  debug: boolean;
  // SGX
  mrenclave?: string;
  mrsigner?: string;
  isvprodid?: number;
  isvsvn?: number;
  /** SGX ATTRIBUTES, 16 bytes. */
  attributes?: string;
  miscselect?: string;
  cpusvn?: string;
  // TDX
  mrtd?: string;
  rtmr0?: string;
  rtmr1?: string;
  rtmr2?: string;
  rtmr3?: string;
  /** TD attributes as 16 hex characters (8 bytes, as in the report). */
  tdAttributes?: string;
  /** XFAM as 16 hex characters (8 bytes, as in the report). */
  xfam?: string;
  mrseam?: string;
  mrsignerseam?: string;
  mrconfigid?: string;
  mrowner?: string;
  mrownerconfig?: string;
  teeTcbSvn?: string;
  // SEV-SNP
  measurement?: string;
  /** Guest policy as a decimal string (a 64-bit value, kept exact). */
  policy?: string;
  hostData?: string;
  guestSvn?: number;
  vmpl?: number;
  familyId?: string;
  imageId?: string;
  idKeyDigest?: string;
  authorKeyDigest?: string;
  reportId?: string;
  chipId?: string;
  /** Reported TCB as 16 hex characters (the 64-bit value, most significant byte first). */
  reportedTcb?: string;
  reportVersion?: number;
}
