import { CasError } from '../errors/cas-error.js';
import { FORMATS_BY_KIND, type PlaceholderFormat } from '../policy/placeholders.js';
import type { StoredSecret } from './types.js';

/**
 * Renders a secret in a placeholder format. Without a format: ascii as written, binary as hex,
 * private-key as PKCS#8 PEM, certificates as certificate PEM. `chain` is the certificate followed by its
 * issuer chain. Throws SECRET_REFERENCE_INVALID when the kind has no such format or the secret lacks the
 * part (a certificate given without key, a public export).
 */
export function formatSecret(secret: StoredSecret, format: PlaceholderFormat | undefined, name: string): string {
  if (format !== undefined && !FORMATS_BY_KIND[secret.kind].includes(format)) {
    throw new CasError(
      'SECRET_REFERENCE_INVALID',
      `format "${format}" does not apply to ${secret.kind} secret "${name}"; use one of ${FORMATS_BY_KIND[secret.kind].join(', ')}`,
      { details: { secret: name, format } },
    );
  }

  switch (secret.kind) {
    case 'ascii':
      if (format === 'hex') return Buffer.from(secret.value, 'utf8').toString('hex');
      if (format === 'base64') return Buffer.from(secret.value, 'utf8').toString('base64');
      return secret.value;
    case 'binary':
      if (format === 'base64') return secret.valueBase64;
      return Buffer.from(secret.valueBase64, 'base64').toString('hex');
    case 'private-key':
      if (format === 'publickey') return secret.publicKeyPem;
      return requirePrivateKey(secret.privateKeyPem, name);
    case 'x509':
    case 'x509-ca':
      if (format === 'publickey') return secret.publicKeyPem;
      if (format === 'key' || format === 'privatekey') return requirePrivateKey(secret.privateKeyPem, name);
      if (format === 'chain') return [secret.certificatePem, ...secret.chainPem].map(withNewline).join('');
      return secret.certificatePem;
  }
}

function requirePrivateKey(pem: string | undefined, name: string): string {
  if (pem === undefined) {
    throw new CasError('SECRET_REFERENCE_INVALID', `secret "${name}" has no private key available to this session`, {
      details: { secret: name },
    });
  }
  return pem;
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
