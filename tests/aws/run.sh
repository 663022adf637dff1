#!/usr/bin/env bash
# Runs the AWS-client suite: venv (reused while requirements.txt is unchanged),
# cargo build, pytest. Extra arguments go to pytest (e.g. -k connect -x).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${CCNPROXY_AWS_VENV:-.venv}
requirements=tests/aws/requirements.txt
stamp="$venv/.tests-aws-requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
fi

cargo build
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/pytest" -q tests/aws "$@"
