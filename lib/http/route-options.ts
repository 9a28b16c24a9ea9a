// What the plugin's routes share besides their handlers: the route options a user passes through
// (log level, route config, constraints) and hiding from API documentation.
import type { FastifySchema, LogLevel } from 'fastify'

const severity: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

/** The quieter of two levels; `serverLevel` is whatever the server's logger says (none without a logger). */
export function quieterLogLevel (level: LogLevel, serverLevel: string | undefined): LogLevel {
  const server = serverLevel === undefined ? undefined : severity[serverLevel]
  return server !== undefined && server > (severity[level] as number) ? serverLevel as LogLevel : level
}

/** A route's schema, with `hide: true` (read by @fastify/swagger) when the routes are hidden. */
export function routeSchema<Schema extends FastifySchema> (schema: Schema, hide: boolean): Schema {
  return hide ? { ...schema, hide: true } : schema
}
