// Text the action did not write reaches the runner's log only through untrusted(): the runner reads
// `::name::` at the start of a line and the older `##[name]` anywhere in one as workflow commands.
import { untrusted, untrustedLines } from '../../src/errors'

/** What the runner would take as a command in a line: its ActionCommand parsers (v2 after Trim(), then the legacy one). */
const command = (line: string): boolean => line.trim().startsWith('::') || line.includes('##[')

test.each([
  '::set-output name=platforms::pwned',
  '  \t::add-mask::secret',
  '##[set-output name=platforms;]pwned',
  'pid 4242 (user ##[error]x, since ##[stop-commands]tok)',
  '###[add-mask]x',
  '#\u0000#[error]x',
  '#\u001b[0m#[error]x',
  '\u2028::error::x',
  '\u001b[31m::warning::red',
])('%j is inert', text => {
  const shown = untrusted(text)
  expect(command(shown)).toBe(false)
  expect(shown).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/)
})

test('one line, ANSI escapes and bidi overrides gone, cut at max; ordinary text (IPv6, URLs) unchanged', () => {
  expect(untrusted('a\nb\r\nc\u202ed')).toBe('a b  c d')
  expect(untrusted('\u001b[1;31mERROR\u001b[0m: x')).toBe('ERROR: x')
  expect(untrusted('x'.repeat(20), 10)).toBe('xxxxxxx...')
  expect(untrusted('http://[fe80::1]:8080/a::b #[x] ## [y]')).toBe('http://[fe80::1]:8080/a::b #[x] ## [y]')
})

test('a message of several lines keeps its lines, each inert', () => {
  const shown = untrustedLines('first\n::set-output name=x::y\n  ##[error]z')
  expect(shown.split('\n')).toHaveLength(3)
  for (const line of shown.split('\n')) expect(command(line)).toBe(false)
})
