export { generateSecrets, resolveImports, DEFAULT_SECRET_SIZE, type GenerateOptions } from './generate.js';
export { createImportResolver, exportAllows, type ExportingSession } from './imports.js';
export { resolveServiceConfig, type ServiceConfig, type ServiceConfigRequest } from './service-config.js';
export { formatSecret } from './formats.js';
export type * from './types.js';
