import type { AttestationVariant } from '../attestation/requirements.js';
import { splitCommandLine } from './command-line.js';
import type { Problems } from './problems.js';
import type { RawService, RawVariant } from './schema.js';
import type { Service } from './types.js';

/** Environment keys written `\@\@NAME` take their value from the host environment at run time. */
export const HOST_ENVIRONMENT_PREFIX = '\\@\\@';

export function normaliseServices(raw: RawService[], hardwareMode: boolean, problems: Problems): Service[] {
  const names = new Set<string>();
  return raw.map((service, index) => {
    const path = ['services', index];
    if (names.has(service.name)) problems.add([...path, 'name'], `duplicate service name "${service.name}"`);
    names.add(service.name);

    const commandText = service.command ?? '';
    const split = splitCommandLine(commandText);
    let command: string[] = [];
    if ('error' in split) problems.add([...path, 'command'], `the command does not parse: ${split.error}`);
    else command = split.argv;

    const environment = { ...(service.environment ?? {}) };
    for (const key of Object.keys(environment)) {
      if (key.startsWith(HOST_ENVIRONMENT_PREFIX) && Object.hasOwn(environment, key.slice(HOST_ENVIRONMENT_PREFIX.length))) {
        problems.add(
          [...path, 'environment', key],
          `"${key.slice(HOST_ENVIRONMENT_PREFIX.length)}" is both set and taken from the host; keep one of the two keys`,
        );
      }
    }

    const attestation = normaliseAttestation(service, path, problems);
    if (hardwareMode && attestation.length === 0) {
      problems.add(
        path,
        `service "${service.name}" has no attestation requirement; add mrenclaves or attestation, or set security.attestation.mode to none for simulated services`,
      );
    }

    const normalised: Service = { name: service.name, command, commandText, environment, attestation };
    if (service.pwd !== undefined) normalised.pwd = service.pwd;
    if (service.image_name !== undefined) normalised.imageName = service.image_name;
    return normalised;
  });
}

function normaliseAttestation(service: RawService, path: (string | number)[], problems: Problems): AttestationVariant[] {
  if (service.mrenclaves !== undefined && service.attestation !== undefined) {
    problems.add([...path, 'mrenclaves'], 'use either mrenclaves or attestation, not both');
    return [];
  }
  if (service.mrenclaves !== undefined) {
    if (service.mrenclaves.length === 0) {
      problems.add([...path, 'mrenclaves'], 'the list is empty; give at least one MRENCLAVE');
      return [];
    }
    return [{ kind: 'mrenclave', mrenclave: uniqueLower(service.mrenclaves) }];
  }
  if (service.attestation === undefined) return [];

  const single = !Array.isArray(service.attestation);
  const variants = Array.isArray(service.attestation) ? service.attestation : [service.attestation];
  if (variants.length === 0) problems.add([...path, 'attestation'], 'the list is empty; give at least one variant');
  return variants.flatMap((variant, index) => {
    const at = single ? [...path, 'attestation'] : [...path, 'attestation', index];
    const result = normaliseVariant(variant, at, problems);
    return result === undefined ? [] : [result];
  });
}

function normaliseVariant(variant: RawVariant, path: (string | number)[], problems: Problems): AttestationVariant | undefined {
  const present = (['mrenclave', 'signer', 'tdx', 'snp'] as const).filter((key) => variant[key] !== undefined);
  if (present.length !== 1) {
    problems.add(
      path,
      present.length === 0
        ? 'an attestation variant needs one of mrenclave, signer, tdx or snp'
        : `an attestation variant has exactly one of mrenclave, signer, tdx or snp, found ${present.join(' and ')}; write each as its own list entry (evidence matching any entry is accepted)`,
    );
    return undefined;
  }

  if (variant.mrenclave !== undefined) {
    const values = typeof variant.mrenclave === 'string' ? [variant.mrenclave] : variant.mrenclave;
    if (values.length === 0) {
      problems.add([...path, 'mrenclave'], 'the list is empty; give at least one MRENCLAVE');
      return undefined;
    }
    return { kind: 'mrenclave', mrenclave: uniqueLower(values) };
  }

  if (variant.signer !== undefined) {
    const s = variant.signer;
    if (s.isvsvn_min !== undefined && s.isvsvn_max !== undefined && s.isvsvn_min > s.isvsvn_max) {
      problems.add([...path, 'signer', 'isvsvn_min'], `isvsvn_min ${s.isvsvn_min} is greater than isvsvn_max ${s.isvsvn_max}`);
    }
    const signer: AttestationVariant = { kind: 'signer', mrsigner: s.mrsigner.toLowerCase() };
    if (s.isvprodid !== undefined) signer.isvprodid = s.isvprodid;
    if (s.isvsvn !== undefined) signer.isvsvn = s.isvsvn;
    if (s.isvsvn_min !== undefined) signer.isvsvnMin = s.isvsvn_min;
    if (s.isvsvn_max !== undefined) signer.isvsvnMax = s.isvsvn_max;
    return signer;
  }

  if (variant.tdx !== undefined) {
    const t = variant.tdx;
    const tdx: AttestationVariant = { kind: 'tdx' };
    if (t.mrtd !== undefined) tdx.mrtd = uniqueLower(typeof t.mrtd === 'string' ? [t.mrtd] : t.mrtd);
    if (t.rtmr0 !== undefined) tdx.rtmr0 = t.rtmr0.toLowerCase();
    if (t.rtmr1 !== undefined) tdx.rtmr1 = t.rtmr1.toLowerCase();
    if (t.rtmr2 !== undefined) tdx.rtmr2 = t.rtmr2.toLowerCase();
    if (t.rtmr3 !== undefined) tdx.rtmr3 = t.rtmr3.toLowerCase();
    if (t.td_attributes !== undefined) tdx.tdAttributes = t.td_attributes.toLowerCase();
    if (t.xfam !== undefined) tdx.xfam = t.xfam.toLowerCase();
    if ((tdx.mrtd?.length ?? 0) === 0 && [tdx.rtmr0, tdx.rtmr1, tdx.rtmr2, tdx.rtmr3].every((r) => r === undefined)) {
      problems.add([...path, 'tdx'], 'a TDX variant needs mrtd or at least one of rtmr0 to rtmr3');
      return undefined;
    }
    return tdx;
  }

  const s = variant.snp ?? {};
  const snp: AttestationVariant = { kind: 'snp' };
  if (s.measurement !== undefined) snp.measurement = uniqueLower(typeof s.measurement === 'string' ? [s.measurement] : s.measurement);
  if (s.policy !== undefined) snp.policy = typeof s.policy === 'number' ? s.policy : Number.parseInt(s.policy.slice(2), 16);
  if (s.host_data !== undefined) snp.hostData = s.host_data.toLowerCase();
  if ((snp.measurement?.length ?? 0) === 0 && snp.hostData === undefined) {
    problems.add([...path, 'snp'], 'an SEV-SNP variant needs measurement or host_data');
    return undefined;
  }
  return snp;
}

function uniqueLower(values: string[]): string[] {
  return [...new Set(values.map((v) => v.toLowerCase()))];
}
