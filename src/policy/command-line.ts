/**
 * Splits a command line into argv the way a POSIX shell splits words, without any expansion. Blanks
 * separate words and single quotes keep everything literally. Double quotes keep everything but `\"`, `\\`,
 * `\$` and `` \` ``, whose backslash is removed. A backslash outside quotes escapes the next character.
 * `$`, `*`, `~` and `$$SCONE::...$$` placeholders stay as written.
 *
 * Returns `{ error }` for an unterminated quote or a trailing backslash.
 */
export function splitCommandLine(text: string): { argv: string[] } | { error: string } {
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;

  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) argv.push(word);
      word = '';
      inWord = false;
      i += 1;
      continue;
    }
    inWord = true;

    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) return { error: `unterminated single quote at character ${i}` };
      word += text.slice(i + 1, close);
      i = close + 1;
      continue;
    }

    if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= text.length) return { error: `unterminated double quote at character ${i}` };
        const d = text[j] as string;
        if (d === '"') break;
        const next = text[j + 1];
        if (d === '\\' && next !== undefined && '"\\$`'.includes(next)) {
          word += next;
          j += 2;
        } else {
          word += d;
          j += 1;
        }
      }
      i = j + 1;
      continue;
    }

    if (c === '\\') {
      const next = text[i + 1];
      if (next === undefined) return { error: 'trailing backslash at the end of the command' };
      if (next !== '\n') word += next;
      i += 2;
      continue;
    }

    word += c;
    i += 1;
  }
  if (inWord) argv.push(word);
  return { argv };
}
