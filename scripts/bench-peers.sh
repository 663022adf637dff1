#!/bin/sh
# Installs the peers the benchmarks compare ccnproxy with: Debian's nginx
# (a keepalive TLS reverse proxy). The bench starts its own nginx with a
# private config on 127.0.0.1; the packaged service is not started or used.
# Usage: scripts/bench-peers.sh   (as root, or with sudo available)
set -eu

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    echo "nginx already installed: $(/usr/sbin/nginx -v 2>&1)"
    exit 0
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi

# Containers usually ship /usr/sbin/policy-rc.d (exit 101) so that the
# package's service is not started; elsewhere the packaged nginx starts on
# port 80 as usual, which the bench does not need: stop it if you like.
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends nginx
/usr/sbin/nginx -v
