const PLACEHOLDER = /\$\$SCONE::.*?\$\$/gs;
const VARIABLE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Replaces `$NAME` and `${NAME}` for the names in `vars` (the `-e NAME=VALUE` options of
 * `cas session create`). Everything else stays as written: variables not in `vars`, `$$` (so
 * `$$SCONE::secret$$` placeholders are never touched), and `$NAME_SUFFIX` when only `NAME` is given,
 * because like a shell the longest name after `$` is the variable. Values are inserted literally.
 */
export function substituteVariables(text: string, vars: Record<string, string>): string {
  const replace = (segment: string): string =>
    segment.replace(VARIABLE, (match: string, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare;
      if (name === undefined || !Object.hasOwn(vars, name)) return match;
      return vars[name] as string;
    });

  let out = '';
  let last = 0;
  for (const placeholder of text.matchAll(PLACEHOLDER)) {
    out += replace(text.slice(last, placeholder.index)) + placeholder[0];
    last = placeholder.index + placeholder[0].length;
  }
  return out + replace(text.slice(last));
}
