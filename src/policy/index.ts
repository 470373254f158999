export { parseSession, REDACTED_VALUE, SUPPORTED_VERSIONS } from './parse-session.js';
export { substituteVariables } from './substitute-variables.js';
export { sessionHash, canonicalJson } from './session-hash.js';
export { isAllowed, parentNamespaces, publicKeyHashOfCertificate } from './access.js';
export { renderSessionForRead, toSessionDocument } from './render.js';
export { splitCommandLine } from './command-line.js';
export * from './placeholders.js';
export * from './types.js';
