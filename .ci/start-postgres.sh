#!/usr/bin/env bash
# Source this file: starts a throwaway PostgreSQL cluster on a free loopback port as an
# unprivileged user, exports CKAN_MIGRATE_TEST_POSTGRES_URL, and registers a trap that stops it.
# Installs Debian's postgresql package when the server binaries are missing.
set -u
export PATH="$PATH:/usr/sbin:/sbin"
find_pg_bin() {
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}
pg_bin=$(find_pg_bin) || {
  echo "ci: installing PostgreSQL server binaries (Debian package postgresql)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi
  pg_bin=$(find_pg_bin) || { echo "ci: no PostgreSQL server binaries after install" >&2; return 1 2>/dev/null || exit 1; }
}
pg_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: use the Debian package's postgres user, or make one.
  if id postgres >/dev/null 2>&1; then pg_user=postgres
  else
    pg_user=ckanmigrateci
    id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
  fi
fi
pg_dir=$(mktemp -d /tmp/ckan-migrate-pg.XXXXXX)
chmod 0755 "$pg_dir"
[ "$(id -u)" = 0 ] && chown "$pg_user" "$pg_dir"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$pg_user" -- "$@"; else "$@"; fi; }
pg_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c fsync=off -c max_connections=300 -c shared_buffers=256MB" start >/dev/null
export CKAN_MIGRATE_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
ckan_migrate_stop_postgres() { as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pg_dir"; }
trap ckan_migrate_stop_postgres EXIT
echo "ci: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port" >&2
