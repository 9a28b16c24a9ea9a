// The history defaults that the package's engines start from, and that the plugin's options
// document: here, so that the engines need nothing from lib/options.ts.
export const defaultHistorySize = 100
export const defaultHistoryTtl = 300
export const defaultHistoryChannels = 100_000
