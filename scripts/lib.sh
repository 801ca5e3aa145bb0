# Shared shell helpers for FastChat's scripts: installing what a fresh Debian machine lacks
# and running a private PostgreSQL cluster inside the project folder.
# Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN="${FASTCHAT_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it by hand, or run as root)"
  fi
}

# Installs the Debian packages FastChat builds and runs with, when they are missing.
ensure_system_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v curl >/dev/null || missing+=(curl)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -x "$PG_BIN/initdb" ] || missing+=(postgresql)
  [ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
  command -v cc >/dev/null || missing+=(build-essential)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL binaries not found in $PG_BIN (set FASTCHAT_PG_BIN)"
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
}

# make_local_certificate DIR: a certificate authority of this machine's own and a
# certificate it signs for 127.0.0.1, localhost and this host's name, in DIR (ca.pem,
# cert.pem, key.pem; the keys 0600), made once and kept. The CA's key stays in DIR, so
# that a certificate can be made again with the same CA; nothing outside this machine
# should trust it.
make_local_certificate() {
  local dir="$1" host
  [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && [ -s "$dir/ca.pem" ] &&
    openssl x509 -in "$dir/cert.pem" -noout -checkend 86400 >/dev/null && return 0
  command -v openssl >/dev/null || {
    log "installing openssl"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl >/dev/null
  }
  host="$(hostname)"
  log "making a certificate for 127.0.0.1, localhost and $host in $dir"
  mkdir -p "$dir"
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -subj "/CN=FastChat local CA ($host)" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.csr" \
      -subj "/CN=$host" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" \
      >"$dir/cert.ext"
    openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 825 -extfile "$dir/cert.ext" -out "$dir/cert.pem" 2>/dev/null
    rm -f "$dir/cert.csr" "$dir/cert.ext" "$dir/ca.srl"
  ) || die "making the certificate failed"
  chmod 0644 "$dir/ca.pem" "$dir/cert.pem"
}

# diesel's CLI, with which a test checks that api/src/schema.rs is what
# `diesel print-schema` writes from the migrations: the version of diesel in Cargo.lock.
ensure_diesel_cli() {
  local want
  want="$(awk '/^name = "diesel"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' "$ROOT/Cargo.lock")"
  if ! diesel --version 2>/dev/null | grep -q "Version: $want"; then
    log "installing diesel_cli $want"
    cargo install diesel_cli --quiet --locked --version "$want" \
      --no-default-features --features postgres
  fi
}

# systemd-analyze, with which deploy/check verifies the units (systemd need not run).
ensure_systemd_analyze() {
  if ! command -v systemd-analyze >/dev/null; then
    log "installing systemd (for systemd-analyze)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      systemd >/dev/null
  fi
}

# Prints the path of Debian's nats-server, with which deploy/check checks the NATS
# configuration and the tests run brokers of their own: the installed one, or else the package unpacked into .data/ci (not
# installed, since installing it starts a broker).
nats_server() {
  local nats=/usr/sbin/nats-server dir="$ROOT/.data/ci/nats-server" debs
  [ -x "$nats" ] && { echo "$nats"; return; }
  if [ ! -x "$dir$nats" ]; then
    log "unpacking Debian's nats-server into .data/ci"
    debs="$(mktemp -d)"
    # As root, apt downloads as its own user, which must be able to write there.
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$debs"; fi
    if ! (cd "$debs" && apt-get download -qq nats-server >&2 2>/dev/null); then
      as_root apt-get update -qq >&2
      (cd "$debs" && apt-get download -qq nats-server >&2)
    fi
    mkdir -p "$dir"
    dpkg-deb -x "$debs"/nats-server_*.deb "$dir"
    rm -rf "$debs"
  fi
  echo "$dir$nats"
}

# PostgreSQL refuses to run as root; when we are root the cluster belongs to 'postgres'.
pg_user() {
  if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The folder for cluster NAME: .data/NAME in the project, or, when the project sits where
# the postgres user cannot reach (under /root, say), a folder of its own under /tmp.
pg_dir() {
  local dir="$ROOT/.data/$1"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown "$(pg_user)" "$dir"
    if ! as_pg test -w "$dir" 2>/dev/null; then
      dir="${TMPDIR:-/tmp}/fastchat-$(printf %s "$ROOT" | md5sum | cut -c1-12)/$1"
      mkdir -p "$dir"
      chmod 711 "$(dirname "$dir")"
      chown "$(pg_user)" "$dir"
    fi
  fi
  echo "$dir"
}

# pg_start NAME PORT: starts (creating it the first time) the cluster NAME, listening on
# 127.0.0.1:PORT only, and prints its admin URL on stdout.
pg_start() {
  local name="$1" port="$2"
  local dir
  dir="$(pg_dir "$name")"
  local data="$dir/pgdata"
  if [ ! -s "$dir/password" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/password")
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating PostgreSQL cluster in $data"
    local pwfile; pwfile="$(mktemp)"
    cp "$dir/password" "$pwfile"
    [ "$(id -u)" = 0 ] && chown "$(pg_user)" "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$data" -U fastchat --auth=scram-sha-256 --pwfile="$pwfile" \
      -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; cat "$dir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
  fi
  # A cluster left running on another port (by a run that was killed) would make the
  # URL below point at nothing: stop it and start it where asked.
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1 &&
     [ "$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)" != "$port" ]; then
    log "PostgreSQL in $data runs on another port; restarting it on $port"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null \
      || die "PostgreSQL in $data did not stop"
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='' -c max_connections=500 -c fsync=${FASTCHAT_PG_FSYNC:-on} ${FASTCHAT_PG_OPTIONS:-}" \
      >/dev/null || { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start (port $port taken?)"; }
  fi
  echo "postgres://fastchat:$(cat "$dir/password")@127.0.0.1:$port"
}

pg_stop() {
  local data
  data="$(pg_dir "$1")/pgdata"
  if [ -f "$data/PG_VERSION" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# createdb_if_missing ADMIN_URL DBNAME
createdb_if_missing() {
  local url="$1" db="$2"
  if ! psql "$url/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql "$url/postgres" -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
}

# wait_for URL PID LOG: waits until URL answers, or dies if the process PID exits.
wait_for() {
  for _ in $(seq 1 300); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; die "$3: the process exited"; }
    sleep 0.1
  done
  die "$1 did not answer"
}

# start_system BIN_DIR SERVERS FIRST_PORT BALANCER_PORT LOG_DIR: starts SERVERS api
# servers on FIRST_PORT, FIRST_PORT+1, ... and the balancer on BALANCER_PORT (which
# finds them in the database's server registry), all on FASTCHAT_DATABASE_URL, and
# waits until each answers. Every admin listener (/metrics and the probes) is 1000 ports
# up from its public port. The balancer serves TLS when FASTCHAT_TLS_CERT and
# FASTCHAT_TLS_KEY are set. Their process ids go into API_PIDS and BALANCER_PID. A
# command in BALANCER_UNDER (a profiler, say) runs the balancer as its child.
API_PIDS=()
BALANCER_PID=
BALANCER_UNDER=()
start_system() {
  local bin="$1" servers="$2" first_port="$3" balancer_port="$4" logs="$5" port
  mkdir -p "$logs"
  for i in $(seq 0 $((servers - 1))); do
    port=$((first_port + i))
    "$bin/fastchat-api" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1000))" \
      >"$logs/api-$port.log" 2>&1 &
    API_PIDS+=($!)
    wait_for "http://127.0.0.1:$((port + 1000))/readyz" "$!" "$logs/api-$port.log"
  done
  "${BALANCER_UNDER[@]}" "$bin/fastchat-balancer" --listen "127.0.0.1:$balancer_port" \
    --admin-listen "127.0.0.1:$((balancer_port + 1000))" >"$logs/balancer.log" 2>&1 &
  BALANCER_PID=$!
  wait_for "http://127.0.0.1:$((balancer_port + 1000))/readyz" "$BALANCER_PID" "$logs/balancer.log"
  if [ ${#BALANCER_UNDER[@]} -gt 0 ]; then
    BALANCER_PID="$(pgrep -P "$BALANCER_PID" -f fastchat-balancer)" ||
      die "the balancer is not a child of ${BALANCER_UNDER[0]}"
  fi
}

# stop_system: stops what start_system started.
stop_system() {
  for pid in "${API_PIDS[@]}" $BALANCER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
