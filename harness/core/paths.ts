// Where the project's own files are: patches/, kconfigs/, guest/ (the compiled
// code runs from dist/harness/core/, three levels below the root).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** A path under the project root. */
export const projectPath = (...parts: string[]) => join(PROJECT_ROOT, ...parts);
