#!/bin/sh
# Installs the peers the benchmarks compare ccnproxy with: Debian's nginx
# and HAProxy (keep-alive TLS reverse proxies), and what
# scripts/callgrind-proxy.sh needs (valgrind, wrk). The bench starts its own
# nginx and HAProxy with private configs on 127.0.0.1; the packaged services
# are not started or used.
# Usage: scripts/bench-peers.sh   (as root, or with sudo available)
set -eu

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if [ -z "$missing" ]; then
    echo "already installed: $(/usr/sbin/nginx -v 2>&1), $(/usr/sbin/haproxy -v | head -1)"
    exit 0
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi

# Containers usually ship /usr/sbin/policy-rc.d (exit 101) so that the
# packages' services are not started; elsewhere the packaged nginx and
# HAProxy start as usual, which the bench does not need: stop them if you like.
$SUDO apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
/usr/sbin/nginx -v
/usr/sbin/haproxy -v | head -1
