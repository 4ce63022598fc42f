#!/usr/bin/env bash
# Runs a command against a throw-away PostgreSQL 15 on 127.0.0.1 and a free port, then removes it.
# The command sees TELEMED_TEST_DATABASE_URL; postgres refuses to run as root, so it runs as `postgres`.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
dir=$(mktemp -d /tmp/telemed-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U telemed --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
"${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U telemed telemed
export TELEMED_TEST_DATABASE_URL="postgresql+asyncpg://telemed@127.0.0.1:$port/telemed"
echo "PostgreSQL 15 on 127.0.0.1:$port"
"$@"
