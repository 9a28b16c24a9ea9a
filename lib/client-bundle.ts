// Bundles the client (lib/client/client.ts and what it imports) into one ES module with esbuild:
// the script the plugin serves from a checkout, and the one `npm run build` writes into dist.
import { dirname, resolve } from 'node:path'
import type { BuildOptions } from 'esbuild'

// esbuild is a devDependency: an installed package serves the bundle that `npm run build` made, so
// only a checkout (or the build) loads it. It bundles in a process of its own, whose memory is not
// the server's, and its Node.js side keeps that process unref()ed: nothing is held open.
function options (entry: string): BuildOptions {
  return {
    entryPoints: [entry],
    absWorkingDir: dirname(entry),
    bundle: true,
    format: 'esm',
    // What the TypeScript compiler made of the client before: every browser the tests drive runs it.
    target: 'es2022',
    platform: 'neutral',
    logLevel: 'silent'
  }
}

/** The client as one ES module, bundled from the TypeScript source at `entry` (a path). */
export async function bundleClient (entry: string): Promise<string> {
  const esbuild = await import('esbuild')
  const { outputFiles } = await esbuild.build({ ...options(entry), write: false })
  return outputFiles[0]?.text as string
}

/**
 * `npm run build`, after tsc: writes the bundle of `entry` to `outfile` (over tsc's
 * dist/lib/client/client.js, which imports its neighbours), with a source map that points at the
 * sources, which the package ships, as tsc's maps do (tsconfig.build.json).
 */
export async function writeClientBundle (entry: string, outfile: string): Promise<void> {
  const esbuild = await import('esbuild')
  await esbuild.build({ ...options(resolve(entry)), outfile: resolve(outfile), sourcemap: 'linked', sourcesContent: false })
}
