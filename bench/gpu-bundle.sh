#!/usr/bin/env bash
# Packs what the GPU session needs onto a GPU host that has no Node.js and no network, into
# .gpu-bundle/ (ignored by git). `npm run gpu:prepare` runs it after the build; by hand:
#
#   bash bench/gpu-bundle.sh
#
# On the GPU host, from a copy of the project root that includes .gpu-bundle/:
#
#   bash .gpu-bundle/enter.sh COMMAND...     e.g. bash bench/gpu-session.sh, npx vitest run ...
#
# The bundle holds this machine's node and npm (x86-64 Linux, glibc), node_modules without what
# only the development machine uses (the TypeScript compiler, biome, clang-format), the build's
# outputs (dist/ and build/Release/*.node), and the commit they were made from (BUNDLE_COMMIT in
# the environment of the command, with +dirty when tracked files were modified).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out=.gpu-bundle
git check-ignore -q "$out/" || echo "/$out/" >>"$(git rev-parse --git-path info/exclude)"
[ -d node_modules ] || { echo "gpu-bundle: run npm install first" >&2; exit 1; }
[ -d dist ] && compgen -G 'build/Release/*.node' >/dev/null || { echo "gpu-bundle: build first (dist/, build/Release/*.node)" >&2; exit 1; }
mkdir -p "$out"

# pack NAME KEY COMMAND...: writes $out/NAME from COMMAND's output unless the last one was made from
# the same KEY (node and node_modules take minutes to compress and seldom change).
pack() {
  local name=$1 key=$2
  shift 2
  if [ -f "$out/$name" ] && [ "$(cat "$out/$name.key" 2>/dev/null)" = "$key" ]; then
    echo "gpu-bundle: $name unchanged"
    return
  fi
  echo "gpu-bundle: compressing $name"
  "$@" | xz -T0 -6 >"$out/$name"
  echo "$key" >"$out/$name.key"
}
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
pack node.xz "$(sha1sum <"$node_bin")" cat "$node_bin"
pack npm.tar.xz "$npm_dir $(npm --version)" tar -C "$(dirname "$npm_dir")" -cf - "$(basename "$npm_dir")"
pack node_modules.tar.xz "$(cat package-lock.json node_modules/.package-lock.json 2>/dev/null | sha1sum)" \
  tar --exclude='node_modules/typescript' --exclude='node_modules/@typescript' --exclude='node_modules/@biomejs' \
  --exclude='node_modules/clang-format-node' --exclude='node_modules/.cache' -cf - node_modules
echo "gpu-bundle: compressing outputs.tar.xz"
tar -cf - dist build/Release/*.node | xz -T0 -6 >"$out/outputs.tar.xz"
dirty=$(git status --porcelain --untracked-files=no | wc -l)
echo "$(git rev-parse HEAD)$([ "$dirty" -gt 0 ] && echo "+dirty")" >"$out/commit"
(cd "$out" && cat commit node.xz npm.tar.xz node_modules.tar.xz outputs.tar.xz | sha1sum | cut -c1-16) >"$out/stamp"

cat >"$out/enter.sh" <<'EOS'
#!/usr/bin/env bash
# Unpacks the bundle (again whenever it changed) and runs the given command with node and npm on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tools=${TMPDIR:-/tmp}/gpu-bundle-tools
stamp=$(cat "$here/stamp")
unxz_to() {  # unxz_to FILE.xz DEST: with xz, or with python3's lzma where xz is missing
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}
untar_xz() {  # untar_xz FILE.tar.xz DIR
  local t; t=$(mktemp); unxz_to "$1" "$t" && tar -C "$2" -xf "$t"; rm -f "$t"
}
if [ "$(cat "$tools/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$tools" && mkdir -p "$tools/bin" "$tools/lib"
  unxz_to "$here/node.xz" "$tools/bin/node" && chmod +x "$tools/bin/node"
  untar_xz "$here/npm.tar.xz" "$tools/lib"
  ln -sf "$tools/lib/npm/bin/npm-cli.js" "$tools/bin/npm"
  ln -sf "$tools/lib/npm/bin/npx-cli.js" "$tools/bin/npx"
  echo "$stamp" >"$tools/stamp"
fi
if [ "$(cat "$root/node_modules/.gpu-bundle-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$root/node_modules" && untar_xz "$here/node_modules.tar.xz" "$root"
  untar_xz "$here/outputs.tar.xz" "$root"
  echo "$stamp" >"$root/node_modules/.gpu-bundle-stamp"
fi
export PATH="$tools/bin:$root/node_modules/.bin:$PATH"
export BUNDLE_COMMIT=$(cat "$here/commit")
cd "$root"
exec "$@"
EOS
chmod +x "$out/enter.sh"
echo "gpu-bundle: $(du -sh "$out" | cut -f1) in $out/ (commit $(cat "$out/commit"))"
