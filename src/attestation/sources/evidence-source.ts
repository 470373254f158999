/** Evidence that a TEE produced for given report data. */
export interface CollectedEvidence {
  teeType: 'sgx' | 'tdx' | 'snp';
  /** The quote (SGX, TDX) or attestation report (SEV-SNP). */
  evidence: Buffer;
  /** Extra data from the provider; for SEV-SNP, the certificate table (VCEK and chain) when the host supplies it. */
  auxiliary?: Buffer;
}

/** A workload's source of evidence: the Linux configfs-tsm interface or Gramine's /dev/attestation. */
export interface EvidenceSource {
  readonly kind: 'configfs-tsm' | 'gramine';
  /** Asks the TEE for evidence over exactly 64 bytes of report data. */
  collect(reportData: Buffer): Promise<CollectedEvidence>;
}
