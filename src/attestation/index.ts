/** Public surface of the attestation module: verifiers, policy evaluation, binding, collateral, sources. */
export type { EvidenceResult, Measurements } from './evidence-result.js';
export type { AttestationSecurity, AttestationVariant, Tolerance } from './requirements.js';
export { verifyIntelQuote, type IntelVerifyOptions } from './intel/verify-quote.js';
export { parseCollateralFile, formatCollateralFile, type IntelCollateral } from './intel/collateral.js';
export { verifySnpReport, type SnpVerifyOptions } from './snp/verify-report.js';
export { verifyHardwareEvidence, type HardwareVerifierOptions } from './verify-evidence.js';
export { evaluateEvidence, HYPERTHREADING_ADVISORIES, type Mismatch } from './policy-evaluation.js';
export { reportDataFor, checkBinding, REPORT_DATA_LABEL } from './binding.js';
export { decodeEvidenceBytes, evidenceKind } from './evidence-bytes.js';
export { INTEL_SGX_ROOT_CA_PEM, INTEL_SGX_ROOT_CA_SHA256 } from './intel-root-ca.js';
export { PcsClient, collateralKeyForQuote, type CollateralKey, type IntelCollateralSource, type PcsClientOptions } from './collateral/pcs-client.js';
export { IntelCollateralCache, collateralExpiry, type IntelCollateralCacheOptions } from './collateral/intel-cache.js';
export { FileCollateralStore, type CollateralStore } from './collateral/file-store.js';
export { KdsClient, type KdsClientOptions } from './collateral/kds-client.js';
export type { EvidenceSource, CollectedEvidence } from './sources/evidence-source.js';
export { ConfigfsTsmSource, CONFIGFS_TSM_REPORT_PATH } from './sources/configfs-tsm.js';
export { GramineSource, GRAMINE_ATTESTATION_PATH } from './sources/gramine.js';
export { detectEvidenceSource, type DetectOptions } from './sources/detect.js';
