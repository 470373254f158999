import { verify as verifySignature } from 'node:crypto';
import { CasError } from '../../errors/cas-error.js';
import { DerReader, TAG } from '../der.js';
import type { EvidenceResult } from '../evidence-result.js';
import { certificateFromPemOrDer, certificatesFromPem, parseCertificate, verifyChain, type Certificate } from '../x509.js';
import { decodeTcb, parseSnpReport, POLICY_DEBUG, SNP_SIGNED_LENGTH, type SnpTcb } from './report.js';

export interface SnpVerifyOptions {
  /** The VCEK certificate (DER or PEM) for this chip and reported TCB. */
  vcek: Buffer | string;
  /** The ASK (or ASVK) certificate, PEM or DER; a PEM bundle of ASK then ARK, as AMD KDS serves, is also accepted. */
  ask: Buffer | string;
  /**
   * The trusted AMD root keys (ARK), PEM or DER. The ARK must be pinned by the caller: one fetched along
   * with the ASK proves nothing.
   */
  trustedArks: Array<Buffer | string>;
  /** The time at which every certificate must be valid. */
  at: Date;
}

const OID_AMD = '1.3.6.1.4.1.3704.1';
const TCB_OIDS: Record<keyof SnpTcb, string> = {
  bootloader: `${OID_AMD}.3.1`,
  tee: `${OID_AMD}.3.2`,
  snp: `${OID_AMD}.3.3`,
  microcode: `${OID_AMD}.3.8`,
  fmc: `${OID_AMD}.3.9`,
};
const OID_PRODUCT_NAME = `${OID_AMD}.2`;
const OID_HWID = `${OID_AMD}.4`;

/**
 * Verifies an SEV-SNP attestation report (version 2 or later) signed by a VCEK: the report signature, the
 * VCEK <- ASK <- ARK chain (RSA-PSS with SHA-384) up to a trusted ARK, and the reported TCB and chip id
 * against the VCEK's extensions. No I/O.
 *
 * VCEKs carry serial number zero, which RFC 5280 forbids and strict X.509 parsers reject; our DER reader
 * accepts any INTEGER serial, zero and negative ones included.
 */
export function verifySnpReport(reportBytes: Buffer, options: SnpVerifyOptions): EvidenceResult {
  const report = parseSnpReport(reportBytes);
  const signingKey = (report.keyInfo >> 2) & 0x7;
  if (signingKey !== 0) {
    throw new CasError('EVIDENCE_INVALID', `SEV-SNP report is signed by signing key ${signingKey} (1 is the VLEK); only VCEK-signed reports (0) are supported`);
  }

  const vcek = typeof options.vcek === 'string' ? certificatesFromPem(options.vcek, 'VCEK')[0]! : parseCertificate(options.vcek);
  if (vcek.isCa || !vcek.subjectCn.includes('VCEK')) {
    throw new CasError('CERT_CHAIN_INVALID', `the certificate given as VCEK is "${vcek.subjectCn}"${vcek.isCa ? ', a CA certificate' : ''}, not a VCEK`);
  }
  const askCandidates = typeof options.ask === 'string' ? certificatesFromPem(options.ask, 'ASK') : [parseCertificate(options.ask)];
  const ask = askCandidates[0]!;
  const arks = options.trustedArks.map((ark) => certificateFromPemOrDer(ark, 'trusted ARK'));
  const ark = arks.find((candidate) => candidate.subject.equals(ask.issuer));
  if (ark === undefined) {
    throw new CasError('CERT_CHAIN_INVALID', `the ASK "${ask.subjectCn}" is issued by "${ask.issuerCn}", which is not a trusted ARK`);
  }
  verifyChain([vcek, ask], { root: ark, at: options.at, what: 'VCEK certificate chain' });
  for (const cert of [vcek, ask, ark]) {
    if (cert.signatureAlgorithm.kind !== 'rsa-pss' || cert.signatureAlgorithm.hash !== 'sha384') {
      throw new CasError('CERT_CHAIN_INVALID', `certificate "${cert.subjectCn}" is not signed with RSA-PSS and SHA-384`);
    }
  }

  const signature = Buffer.concat([report.signatureR, report.signatureS]);
  if (!verifySignature('sha384', report.raw.subarray(0, SNP_SIGNED_LENGTH), { key: vcek.publicKey, dsaEncoding: 'ieee-p1363' }, signature)) {
    throw new CasError('EVIDENCE_INVALID', 'the SEV-SNP report signature does not verify with the VCEK');
  }

  const product = productName(vcek);
  const reported = decodeTcb(report.reportedTcb, product);
  const certified = vcekTcb(vcek);
  for (const field of Object.keys(TCB_OIDS) as Array<keyof SnpTcb>) {
    if (reported[field] === undefined) continue;
    if (certified[field] !== reported[field]) {
      throw new CasError(
        'EVIDENCE_INVALID',
        `SEV-SNP reported TCB ${field} SVN ${reported[field]} differs from ${certified[field] ?? 'none'} in the VCEK; the VCEK is for another TCB`,
      );
    }
  }
  const chipIdMasked = (report.keyInfo & 0x2) !== 0;
  const hwid = vcek.extensions.get(OID_HWID)?.value;
  if (!chipIdMasked && (hwid === undefined || !hwid.equals(report.chipId))) {
    throw new CasError('EVIDENCE_INVALID', 'SEV-SNP report CHIP_ID differs from the hwID of the VCEK; the VCEK is for another chip');
  }

  return {
    teeType: 'snp',
    tcbStatus: 'NotEvaluated',
    advisoryIds: [],
    measurements: {
      debug: (report.policy & POLICY_DEBUG) !== 0n,
      measurement: report.measurement.toString('hex'),
      policy: report.policy.toString(),
      hostData: report.hostData.toString('hex'),
      guestSvn: report.guestSvn,
      vmpl: report.vmpl,
      familyId: report.familyId.toString('hex'),
      imageId: report.imageId.toString('hex'),
      idKeyDigest: report.idKeyDigest.toString('hex'),
      authorKeyDigest: report.authorKeyDigest.toString('hex'),
      reportId: report.reportId.toString('hex'),
      chipId: report.chipId.toString('hex'),
      reportedTcb: Buffer.from(report.reportedTcb).reverse().toString('hex'),
      reportVersion: report.version,
    },
    reportData: Buffer.from(report.reportData),
  };
}

function productName(vcek: Certificate): string {
  const value = vcek.extensions.get(OID_PRODUCT_NAME)?.value;
  if (value === undefined) return 'Milan';
  const reader: DerReader = new DerReader(value, 'CERT_CHAIN_INVALID', 'VCEK productName');
  return reader.content(reader.root()).toString('latin1');
}

function vcekTcb(vcek: Certificate): Partial<SnpTcb> {
  const result: Partial<SnpTcb> = {};
  for (const [field, oid] of Object.entries(TCB_OIDS) as Array<[keyof SnpTcb, string]>) {
    const value = vcek.extensions.get(oid)?.value;
    if (value === undefined) continue;
    const reader: DerReader = new DerReader(value, 'CERT_CHAIN_INVALID', `VCEK extension ${oid}`);
    result[field] = Number(reader.integer(reader.expect(reader.root(), TAG.INTEGER, oid)));
  }
  return result;
}
