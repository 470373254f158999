#!/usr/bin/env bash
# Installs or reconciles the kubectl plugin `kubectl-provision` (kubectl provision cas ...).
# Run `install.sh --help` for the options. The only network access is npm's, and only with --from-npm.
set -euo pipefail

PLUGIN_NAME="kubectl-provision"
PLUGIN_ENTRY="src/kubernetes/plugin/main.js"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

reconcile=false
plugin=false
verbose=false
bin_dir=""
npm_spec=""
dist_dir="dist"
build=true

usage() {
  cat <<EOF
Usage: install.sh --plugin [--reconcile] [--verbose] [--bin-dir DIR] [--dist DIR] [--no-build] [--from-npm SPEC]

Installs the kubectl plugin kubectl-provision, so that "kubectl provision cas NAME" works.

Options:
  --plugin          install the kubectl plugin (required; the only component this script installs)
  --reconcile       make an existing installation match this one: replace a link that points elsewhere
                    and rebuild a stale build (default: stop with an error if another installation exists)
  --verbose         print every step
  --bin-dir DIR     directory on PATH for the kubectl-provision link
                    (default: the bin directory of "npm prefix -g")
  --dist DIR        build output directory of this checkout, relative to it (default: dist)
  --no-build        never build; fail if the built plugin is missing
  --from-npm SPEC   run "npm install -g SPEC" (a package name, tarball or directory) instead of linking
                    this checkout's build; npm may download from its registry
  -h, --help        print this help

Without --from-npm, the script builds this checkout with "npm run build" when the plugin is missing or
older than its sources, then links ${PLUGIN_NAME} into --bin-dir. Running it again changes nothing.
Node.js 20 or later and npm must be installed; kubectl finds the plugin on PATH.
EOF
}

log() { printf '%s\n' "$*" >&2; }
detail() { if [[ "$verbose" == true ]]; then log "$@"; fi; }
fail() { log "error: $*"; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --reconcile) reconcile=true ;;
    --plugin) plugin=true ;;
    --verbose) verbose=true ;;
    --bin-dir)
      [[ $# -ge 2 ]] || fail "--bin-dir needs a directory"
      bin_dir="$2"
      shift
      ;;
    --dist)
      [[ $# -ge 2 ]] || fail "--dist needs a directory"
      dist_dir="$2"
      shift
      ;;
    --no-build) build=false ;;
    --from-npm)
      [[ $# -ge 2 ]] || fail "--from-npm needs a package spec"
      npm_spec="$2"
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      log "error: unknown option $1"
      usage >&2
      exit 2
      ;;
  esac
  shift
done

[[ "$plugin" == true ]] || fail "nothing to install: pass --plugin (see --help)"

command -v node >/dev/null || fail "node is not installed; install Node.js 20 or later"
command -v npm >/dev/null || fail "npm is not installed; it comes with Node.js"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[[ "$node_major" -ge 20 ]] || fail "Node.js $(node --version) is too old; install Node.js 20 or later"

if [[ -z "$bin_dir" ]]; then
  bin_dir="$(npm prefix -g)/bin"
fi
detail "bin directory: $bin_dir"

verify() {
  local installed="$1"
  "$installed" cas --help >/dev/null || fail "$installed cas --help failed"
  detail "$installed cas --help works"
  case ":$PATH:" in
    *":$(dirname "$installed"):"*) ;;
    *) log "warning: $(dirname "$installed") is not on PATH; add it so that kubectl finds ${PLUGIN_NAME}" ;;
  esac
  if command -v kubectl >/dev/null && ! kubectl plugin list 2>/dev/null | grep -q "/${PLUGIN_NAME}\$"; then
    log "warning: kubectl plugin list does not show ${PLUGIN_NAME}; check PATH"
  fi
}

if [[ -n "$npm_spec" ]]; then
  log "installing ${npm_spec} with npm install -g"
  npm install -g "$npm_spec"
  verify "$(npm prefix -g)/bin/${PLUGIN_NAME}"
  log "${PLUGIN_NAME} installed from npm"
  exit 0
fi

[[ -f "$SCRIPT_DIR/package.json" ]] || fail "$SCRIPT_DIR has no package.json; run install.sh from a checkout or use --from-npm"
entry="$SCRIPT_DIR/$dist_dir/$PLUGIN_ENTRY"

# Build when the plugin is missing or any TypeScript source is newer than it.
needs_build=false
if [[ ! -f "$entry" ]]; then
  needs_build=true
elif [[ -n "$(find "$SCRIPT_DIR/src" -name '*.ts' -newer "$entry" -print -quit)" ]]; then
  if [[ "$reconcile" == true && "$build" == true ]]; then
    needs_build=true
  else
    log "warning: $entry is older than its sources; pass --reconcile to rebuild"
  fi
fi
if [[ "$needs_build" == true ]]; then
  [[ "$build" == true ]] || fail "$entry does not exist and --no-build was given"
  [[ -d "$SCRIPT_DIR/node_modules" ]] || (cd "$SCRIPT_DIR" && npm ci)
  log "building the plugin into $dist_dir"
  (cd "$SCRIPT_DIR" && npx tsc -p tsconfig.json --outDir "$dist_dir" --tsBuildInfoFile "$dist_dir/.tsbuildinfo")
fi
[[ -f "$entry" ]] || fail "the build did not produce $entry"
chmod 0755 "$entry"

mkdir -p "$bin_dir"
link="$bin_dir/$PLUGIN_NAME"
if [[ -L "$link" && "$(readlink "$link")" == "$entry" ]]; then
  log "${PLUGIN_NAME} is already installed: $link -> $entry"
elif [[ -e "$link" || -L "$link" ]]; then
  [[ "$reconcile" == true ]] || fail "$link already exists and is not a link to $entry; pass --reconcile to replace it"
  ln -sfn "$entry" "$link"
  log "${PLUGIN_NAME} reconciled: $link -> $entry"
else
  ln -s "$entry" "$link"
  log "${PLUGIN_NAME} installed: $link -> $entry"
fi
verify "$link"
