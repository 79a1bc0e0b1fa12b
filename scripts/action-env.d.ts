// Types of action-env.js, for the tests' support, which shares it.
export const ROOT: string
export const SCRIPT: string
/** INPUT_<NAME> as the runner spells it: upper case, spaces to '_', hyphens kept. */
export function inputEnvName(name: string): string
/** `name<<DELIM\nvalue\nDELIM` blocks as @actions/core writes them, plus plain `name=value` lines; throws on an unterminated block. */
export function parseKeyValueFile(text: string): Record<string, string>
export function ensureDist(log: (m: string) => void): boolean
