#!/bin/sh
# Instructions per request of the proxy's hot path, for A/B comparisons that
# the noise of a shared machine cannot fake: the release binary runs under
# `valgrind --tool=callgrind`, nginx serves as the TLS origin (h2 or
# HTTP/1.1 only), wrk sends POST 1 KiB → 1 KiB on keep-alive connections.
# Counting starts after a warm-up (`callgrind_control -z`) and the total is
# divided by the requests wrk completed in the measured window.
#
# Usage: scripts/callgrind-proxy.sh [h1|h2] [log|nolog] [BINARY]
#        SIZE=1m ... (GET 1 MiB responses instead: instructions per MiB)
#        CLOSE=1 ... (`Connection: close`: a new client connection per call)
# Needs valgrind, nginx, wrk and openssl (Debian packages); prints
# `instructions/request N` and leaves callgrind.out.* in $OUT (default a
# temporary folder) for callgrind_annotate.
set -eu

KIND=${1:-h2}
LOG=${2:-nolog}
BIN=${3:-${CARGO_TARGET_DIR:-target}/release/ccnproxy}
SECONDS_WARM=${WARM:-4}
SECONDS_RUN=${RUN:-10}
CONNS=${CONNS:-16}

for tool in valgrind callgrind_control nginx wrk openssl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "callgrind-proxy: $tool is not installed; skipped" >&2
        exit 0
    }
done

DIR=$(mktemp -d)
OUT=${OUT:-$DIR}
cleanup() {
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
    [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A throw-away CA and a certificate for origin.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=origin.test \
    -keyout "$DIR/origin.key" -out "$DIR/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:origin.test\n' >"$DIR/ext"
openssl x509 -req -in "$DIR/origin.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/ext" -out "$DIR/origin.pem" 2>/dev/null

ORIGIN_PORT=$(free_port)
H2=""
[ "$KIND" = h2 ] && H2="http2 on;"
BODY=$(head -c 1024 /dev/zero | tr '\0' x)
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$DIR/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
daemon on;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $DIR/body;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT ssl;
        $H2
        ssl_certificate $DIR/origin.pem;
        ssl_certificate_key $DIR/origin.key;
        location / { client_body_buffer_size 16k; return 200 "$BODY"; }
        location = /1m { default_type application/octet-stream; alias $DIR/1m.bin; }
    }
}
EOF
# nginx 1.22 spells HTTP/2 as a listen parameter.
if ! nginx -t -p "$DIR" -c "$DIR/nginx.conf" >/dev/null 2>&1; then
    sed -i 's/ssl;$/ssl http2;/; s/^ *http2 on;$//; s/http2_max_requests.*//' "$DIR/nginx.conf"
    [ "$KIND" = h2 ] || sed -i 's/ssl http2;/ssl;/' "$DIR/nginx.conf"
fi
head -c 1048576 /dev/zero >"$DIR/1m.bin"
nginx -p "$DIR" -c "$DIR/nginx.conf"

LOG_ARGS="--access-log-dir none"
[ "$LOG" = log ] && LOG_ARGS="--access-log-dir $DIR/logs"
mkdir -p "$DIR/logs"
PROXY_PORT=$(free_port)
# shellcheck disable=SC2086
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
    "$BIN" -l 127.0.0.1 -p "$PROXY_PORT" --allow-host '*' --allow-cidr 127.0.0.0/8 \
    --log-level warn --ca-file "$DIR/ca.pem" --resolve "origin.test:443:127.0.0.1:$ORIGIN_PORT" \
    -c 64 $LOG_ARGS 2>"$DIR/proxy.err" &
PROXY_PID=$!
i=0
until curl -sf -o /dev/null -H "Host: origin.test.ccnproxy-https" "http://127.0.0.1:$PROXY_PORT/"; do
    i=$((i + 1))
    [ $i -lt 60 ] || { echo "proxy did not start" >&2; cat "$DIR/proxy.err" >&2; exit 1; }
    sleep 1
done

cat >"$DIR/post.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("y", 1024)
wrk.headers["Host"] = "origin.test.ccnproxy-https"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
EOF
if [ "${CLOSE:-0}" = 1 ]; then
    echo 'wrk.headers["Connection"] = "close"' >>"$DIR/post.lua"
fi
URL="http://127.0.0.1:$PROXY_PORT/"
if [ "${SIZE:-1k}" = 1m ]; then
    URL="http://127.0.0.1:$PROXY_PORT/1m"
    sed -i '/wrk.method\|wrk.body/d' "$DIR/post.lua"
fi
wrk -t1 -c"$CONNS" -d"${SECONDS_WARM}s" -s "$DIR/post.lua" "$URL" >/dev/null
callgrind_control -z "$PROXY_PID" >/dev/null
wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -s "$DIR/post.lua" "$URL" >"$DIR/wrk.out"
callgrind_control -d "$PROXY_PID" >/dev/null
REQUESTS=$(awk '/requests in/ {print $1}' "$DIR/wrk.out")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$DIR/wrk.out")
sleep 1
DUMP=$(ls -t "$OUT"/callgrind.out.* | head -1)
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "kind=$KIND log=$LOG size=${SIZE:-1k} requests=$REQUESTS non2xx=${NON2XX:-0} Ir=$IR"
echo "instructions/request $((IR / REQUESTS))"
echo "profile: $DUMP"
