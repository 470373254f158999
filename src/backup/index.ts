/** Backup targets: registration evidence, the owner-only service, removal records and the client. See docs/backup.md. */
export { BackupService, type BackupPlatform } from './backup-service.js';
export { BackupClient } from './backup-client.js';
export { createRegistrationEvidence, verifyRegistrationEvidence, type RegistrationEvidence } from './registration-evidence.js';
export { readRegistrars, type Registrar } from './registrars.js';
export { assertPlatformNotRemoved, readRemovedPlatforms, type RemovedPlatform } from './removed-platforms.js';
