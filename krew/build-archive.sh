#!/usr/bin/env bash
# Builds the krew archive of kubectl-provision and renders krew/provision.yaml for it.
#   krew/build-archive.sh VERSION [URL]
# writes dist-krew/kubectl-provision-VERSION.tar.gz and dist-krew/provision.yaml (with the archive's
# sha256 and URL; the URL defaults to the GitHub release of VERSION). Uses npm only for production
# dependencies, in a staging directory; the repository's node_modules is not touched.
set -euo pipefail

version="${1:?usage: krew/build-archive.sh VERSION [URL]}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/dist-krew"
archive="kubectl-provision-${version}.tar.gz"
url="${2:-https://github.com/cas-project/cas/releases/download/${version}/${archive}}"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

(cd "$root" && npx tsc -p tsconfig.json --outDir "$staging/build" --tsBuildInfoFile "$staging/build/.tsbuildinfo")
mkdir -p "$staging/pkg/dist" "$out"
cp -R "$staging/build/src" "$staging/pkg/dist/src"
find "$staging/pkg/dist" -name '*.test.*' -delete
rm -rf "$staging/pkg/dist/src/testing" "$staging/pkg/dist/src/kubernetes/testing"
cp "$root/package.json" "$root/package-lock.json" "$root/LICENSE" "$staging/pkg/" 2>/dev/null || cp "$root/package.json" "$root/package-lock.json" "$staging/pkg/"
(cd "$staging/pkg" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm rebuild better-sqlite3)
cat > "$staging/pkg/kubectl-provision" <<'WRAPPER'
#!/bin/sh
# Runs the plugin with the node on PATH; krew links this file as kubectl-provision.
here="$(dirname "$(readlink -f "$0")")"
exec node "$here/dist/src/kubernetes/plugin/main.js" "$@"
WRAPPER
chmod 0755 "$staging/pkg/kubectl-provision"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' -C "$staging/pkg" -czf "$out/$archive" .
sha="$(sha256sum "$out/$archive" | cut -d' ' -f1)"
sed -e "s|\"{{ .TagName }}\"|\"${version}\"|" \
    -e "s|{{ addURIAndSha .*|uri: ${url}\n      sha256: \"${sha}\"|" \
    "$root/krew/provision.yaml" > "$out/provision.yaml"
echo "wrote $out/$archive (sha256 $sha) and $out/provision.yaml" >&2
