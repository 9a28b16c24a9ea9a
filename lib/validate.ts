// Checks of registration options that the plugin and the engines share: each throws
// FST_COMET_INVALID_OPTION, naming the option, what it must be and what it got.
import { errors } from './errors.js'

export function invalid (name: string, expected: string, value: unknown): never {
  throw new errors.FST_COMET_INVALID_OPTION(name, expected, describe(value))
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object'
  return String(value)
}

export function positiveInteger (name: string, value: unknown, expected = 'a positive integer'): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) invalid(name, expected, value)
}

export function positiveNumber (name: string, value: unknown, expected = 'a positive number'): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) invalid(name, expected, value)
}
