// Reading Markdown for test/docs.test.ts: fenced code blocks, headings and their GitHub anchors,
// links, and table rows. Just enough of CommonMark for this repository's pages, with no dependency.

export interface CodeBlock {
  /** The first word of the info string: `ts`, `sh`, `json`… ('' when there is none). */
  language: string
  /** The other words of the info string, such as `fragment`. */
  flags: string[]
  /** 1-based line of the opening fence. */
  line: number
  code: string
}

export interface Link {
  target: string
  /** 1-based line. */
  line: number
}

const fenceOpening = /^ {0,3}(`{3,}|~{3,})\s*([^`]*)$/

/** The fenced code blocks of a page, in order. */
export function codeBlocks (markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = []
  let open: { fence: string, language: string, flags: string[], line: number, body: string[] } | undefined
  markdown.split('\n').forEach((text, index) => {
    if (open === undefined) {
      const opening = fenceOpening.exec(text)
      if (opening === null) return
      const [language = '', ...flags] = (opening[2] ?? '').trim().split(/\s+/).filter(word => word !== '')
      open = { fence: opening[1] ?? '```', language, flags, line: index + 1, body: [] }
      return
    }
    const closing = text.trim()
    if (closing.startsWith(open.fence) && closing.replaceAll(open.fence[0] ?? '`', '') === '') {
      blocks.push({ language: open.language, flags: open.flags, line: open.line, code: open.body.join('\n') })
      open = undefined
      return
    }
    open.body.push(text)
  })
  return blocks
}

/** The page with its code blocks and inline code blanked out (lines kept), so links in code are not links. */
function prose (markdown: string): string[] {
  let fence: string | undefined
  return markdown.split('\n').map(text => {
    if (fence === undefined) {
      const opening = fenceOpening.exec(text)
      if (opening === null) return text.replace(/(`+)[^`]*?\1/g, '')
      fence = opening[1]
      return ''
    }
    const closing = text.trim()
    if (closing.startsWith(fence ?? '```') && closing.replaceAll(fence?.[0] ?? '`', '') === '') fence = undefined
    return ''
  })
}

/**
 * The anchors GitHub gives a page's headings: the heading's text without Markdown, lower case,
 * with everything but letters, digits, spaces, `-` and `_` removed, spaces made `-`, and `-1`,
 * `-2`… added to repeats.
 */
export function headingAnchors (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const text of prose(keepInlineCode(markdown))) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(text)
    if (heading === null) continue
    const plain = (heading[1] ?? '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*_]{1,3}([^`*_]+)[`*_]{1,3}/g, '$1')
    const slug = plain.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const repeats = seen.get(slug) ?? 0
    seen.set(slug, repeats + 1)
    anchors.add(repeats === 0 ? slug : `${slug}-${repeats}`)
  }
  return anchors
}

// prose() blanks inline code, but a heading's code is part of its anchor: protect it first.
function keepInlineCode (markdown: string): string {
  return markdown.split('\n').map(text => /^ {0,3}#{1,6}\s/.test(text) ? text.replace(/`/g, '') : text).join('\n')
}

/** Every inline link and image target in the page's prose: `[text](target)` and `![alt](target)`. */
export function links (markdown: string): Link[] {
  const found: Link[] = []
  prose(markdown).forEach((text, index) => {
    for (const match of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      found.push({ target: match[1] ?? '', line: index + 1 })
    }
  })
  return found
}

/** The rows of the first table after the heading `heading`, as arrays of trimmed cells (header and rule left out). */
export function tableAfter (markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n')
  const start = lines.findIndex(text => text.trim() === heading)
  if (start === -1) return []
  const rows: string[][] = []
  let inTable = false
  for (const text of lines.slice(start + 1)) {
    if (/^#{1,6}\s/.test(text) && !inTable) return rows
    if (!text.trimStart().startsWith('|')) {
      if (inTable) break
      continue
    }
    inTable = true
    const cells = text.trim().replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map(cell => cell.trim())
    if (cells.every(cell => /^:?-+:?$/.test(cell))) continue
    rows.push(cells)
  }
  return rows.slice(1)
}
