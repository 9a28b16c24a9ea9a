// The documentation cannot rot: every ```ts block of README.md and docs/*.md is type-checked as a
// user's file importing 'fastify-comet' (mapped to this checkout's sources), every relative link
// points at a file and heading that exist, the README's options table names every option,
// docs/errors.md every error code, docs/testing.md every test file, and docs/README.md every page.
// How to mark a fragment, and what each check asks of a new page: docs/testing.md.
import { readdirSync, readFileSync, existsSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'
import { codeBlocks, headingAnchors, links, tableAfter, type CodeBlock } from './markdown.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))

/** README.md and every page in docs/, so that a new page is checked without being listed here. */
function pages (): string[] {
  const docs = readdirSync(join(repoRoot, 'docs')).filter(name => name.endsWith('.md')).sort().map(name => `docs/${name}`)
  return ['README.md', ...docs]
}

const read = (page: string): string => readFileSync(join(repoRoot, page), 'utf8')

/** Blocks a user would copy. `fragment` after the language marks one that is not meant to compile alone. */
function checkedBlocks (block: CodeBlock): boolean {
  return (block.language === 'ts' || block.language === 'typescript') && !block.flags.includes('fragment')
}

/**
 * 'fastify-comet' and its subpaths, as package.json exports them, mapped to the sources they are
 * built from (`./dist/lib/x.d.ts` → `lib/x.ts`), so that a snippet is checked against this checkout.
 */
function packagePaths (): Record<string, string[]> {
  const manifest = JSON.parse(read('package.json')) as { name: string, exports: Record<string, string | { types?: string }> }
  const paths: Record<string, string[]> = {}
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (typeof target === 'string' || target.types === undefined) continue
    const source = join(repoRoot, target.types.replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts'))
    if (!existsSync(source)) throw new Error(`package.json exports ${subpath} with types ${target.types}, but ${relative(repoRoot, source)} does not exist`)
    paths[subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`] = [source]
  }
  return paths
}

interface Snippet { page: string, line: number, fileName: string }

/**
 * One program holding every snippet as a file of its own (next to package.json, so an ES module
 * with top-level await, as in the example), compiled with the project's tsconfig plus the DOM's
 * types for browser code.
 */
function compileSnippets (sources: Map<string, string>): ts.Program {
  const config = ts.getParsedCommandLineOfConfigFile(join(repoRoot, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: diagnostic => { throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')) } })
  if (config === undefined) throw new Error('tsconfig.json could not be read')
  const options: ts.CompilerOptions = { ...config.options, noEmit: true, lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'], paths: packagePaths() }
  const host = ts.createCompilerHost(options)
  const { getSourceFile, fileExists, readFile } = host
  host.fileExists = fileName => sources.has(fileName) || fileExists.call(host, fileName)
  host.readFile = fileName => sources.get(fileName) ?? readFile.call(host, fileName)
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const text = sources.get(fileName)
    return text === undefined ? getSourceFile.call(host, fileName, languageVersion, ...rest) : ts.createSourceFile(fileName, text, languageVersion, true)
  }
  return ts.createProgram([...sources.keys()], options, host)
}

const snippets: Snippet[] = []
const sources = new Map<string, string>()
for (const page of pages()) {
  for (const block of codeBlocks(read(page)).filter(checkedBlocks)) {
    const fileName = join(repoRoot, '.docs-snippets', `${page.replace(/[/.]/g, '-')}-${block.line}.ts`).replaceAll('\\', '/')
    snippets.push({ page, line: block.line, fileName })
    // `export {}` makes every snippet a module, so that two snippets may declare the same names.
    sources.set(fileName, `${block.code}\nexport {}\n`)
  }
}
// Plugins the pages show beside this one that the repository does not install: their imports are
// typed \`any\`, so that the rest of such a block (the options given to fastify-comet) is still checked.
const untypedPackages = ['@fastify/compress', '@fastify/rate-limit']
sources.set(join(repoRoot, '.docs-snippets', 'untyped-packages.d.ts').replaceAll('\\', '/'), untypedPackages.map(name => `declare module '${name}'\n`).join(''))
// The options the README's table must list, read from the exported types rather than a list here.
const optionsProbe = join(repoRoot, '.docs-snippets', 'options-probe.ts').replaceAll('\\', '/')
sources.set(optionsProbe, "import type { CometOptions } from 'fastify-comet'\nimport type { RedisEngineOptions } from 'fastify-comet/redis'\nexport type PluginOptions = CometOptions\nexport type EngineOptions = RedisEngineOptions\n")
const program = compileSnippets(sources)

t.test('every ```ts block of README.md and docs/*.md type-checks against the sources', async t => {
  t.ok(snippets.length >= 10, `found ${snippets.length} blocks`)
  for (const snippet of snippets) {
    const sourceFile = program.getSourceFile(snippet.fileName)
    const diagnostics = [...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)]
    const report = diagnostics.map(diagnostic => {
      const { line, character } = diagnostic.file === undefined || diagnostic.start === undefined ? { line: 0, character: 0 } : diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
      // The block's first line is the line after its opening fence.
      return `${snippet.page}:${snippet.line + 1 + line}:${character + 1} TS${diagnostic.code}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`
    })
    if (report.length === 0) t.pass(`${snippet.page}:${snippet.line}`)
    else t.fail(`the block at ${snippet.page}:${snippet.line} does not compile:\n${report.join('\n')}`)
  }
})

t.test('no block is written as JavaScript, which nothing would check', async t => {
  for (const page of pages()) {
    for (const block of codeBlocks(read(page))) {
      if (!['js', 'javascript', 'mjs', 'cjs'].includes(block.language) || block.flags.includes('fragment')) continue
      t.fail(`${page}:${block.line}: a \`\`\`${block.language} block; write it as \`\`\`ts so that test/docs.test.ts checks it, or mark it \`\`\`${block.language} fragment`)
    }
  }
  t.pass('checked')
})

t.test('every relative link points at a file, and every #anchor at a heading, that exist', async t => {
  const anchorsOf = new Map<string, Set<string>>()
  const anchors = (page: string): Set<string> => {
    let found = anchorsOf.get(page)
    if (found === undefined) anchorsOf.set(page, found = headingAnchors(readFileSync(page, 'utf8')))
    return found
  }
  let checked = 0
  for (const page of pages()) {
    for (const link of links(read(page))) {
      if (/^[a-z][a-z+.-]*:/i.test(link.target)) continue // https:, mailto:
      const [path = '', anchor] = link.target.split('#')
      const target = path === '' ? join(repoRoot, page) : resolve(dirname(join(repoRoot, page)), decodeURIComponent(path))
      checked++
      if (!existsSync(target)) {
        t.fail(`${page}:${link.line}: ${link.target}: no file ${relative(repoRoot, target)}`)
        continue
      }
      if (anchor !== undefined && target.endsWith('.md') && !anchors(target).has(anchor)) {
        t.fail(`${page}:${link.line}: ${link.target}: no heading with the anchor #${anchor} in ${relative(repoRoot, target)}`)
      }
    }
  }
  t.ok(checked > 50, `checked ${checked} links`)
})

t.test('docs/README.md, the table of contents, links every page of docs/', async t => {
  const index = new Set(links(read('docs/README.md')).map(link => link.target.split('#')[0]))
  for (const page of pages().filter(page => page.startsWith('docs/') && page !== 'docs/README.md')) {
    t.ok(index.has(page.slice('docs/'.length)), `docs/README.md links ${page}`)
  }
})

t.test('docs/testing.md names every test file', async t => {
  const testingPage = read('docs/testing.md')
  for (const file of readdirSync(join(repoRoot, 'test')).filter(name => name.endsWith('.test.ts'))) {
    const name = file.slice(0, -'.test.ts'.length)
    t.ok(testingPage.includes(`\`${name}\``), `docs/testing.md names test/${file} as \`${name}\``)
  }
})

t.test("the README's options table has a row for every option of the plugin and of RedisEngine", async t => {
  const probe = program.getSourceFile(optionsProbe)
  const checker = program.getTypeChecker()
  const typeOf = (name: string): ts.Type => {
    const alias = probe?.statements.filter(ts.isTypeAliasDeclaration).find(statement => statement.name.text === name)
    if (alias === undefined) throw new Error(`the options probe has no ${name}`)
    return checker.getTypeAtLocation(alias.type)
  }
  const pluginOptions = typeOf('PluginOptions')
  const engineOptions = typeOf('EngineOptions')
  const names = (type: ts.Type): string[] => checker.getPropertiesOfType(type).map(property => property.name)

  // Rows name an option by a link, [`name`](docs/…#…); a row whose first cell says RedisEngine
  // and links nothing starts the engine's options.
  const rows = tableAfter(read('README.md'), '## Options')
  const plugin = new Set<string>()
  const engine = new Set<string>()
  let current = plugin
  for (const [first = ''] of rows) {
    const named = /^\[`([A-Za-z]+)`\]\([^)]+\)/.exec(first)
    if (named === null) {
      if (first.includes('RedisEngine')) current = engine
      continue
    }
    current.add(named[1] ?? '')
  }
  t.ok(rows.length > 0, 'README.md has a table under "## Options"')
  for (const name of names(pluginOptions)) t.ok(plugin.has(name), `the plugin's option ${name} has a row in README.md's options table`)
  for (const name of names(engineOptions)) t.ok(engine.has(name), `RedisEngine's option ${name} has a row in the RedisEngine part of README.md's options table`)
  for (const name of plugin) t.ok(names(pluginOptions).includes(name), `the row ${name} is an option of the plugin`)
  for (const name of engine) t.ok(names(engineOptions).includes(name), `the row ${name} is an option of RedisEngine`)
})

t.test('docs/errors.md names every FST_COMET_* code the code raises', async t => {
  const codes = new Set<string>()
  const walk = (folder: string): void => {
    for (const entry of readdirSync(join(repoRoot, folder), { withFileTypes: true })) {
      const path = `${folder}/${entry.name}`
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts')) for (const [code] of read(path).matchAll(/\bFST_COMET_[A-Z0-9_]+/g)) codes.add(code)
    }
  }
  walk('lib')
  const errorsPage = read('docs/errors.md')
  t.ok(codes.size > 10, `found ${codes.size} codes in lib/`)
  for (const code of [...codes].sort()) t.ok(errorsPage.includes(`\`${code}\``), `docs/errors.md names ${code}`)
})
