"""Test-only name resolution for AWS clients: a private hosts file.

Python loads `sitecustomize` at start-up from `PYTHONPATH`, so an AWS CLI (v1,
Python) started with `PYTHONPATH=tests/aws/shim` and `CCNPROXY_TEST_RESOLVE`
resolves names as that variable says; nothing outside the process changes.
The suite also imports `install` for boto3 clients running inside pytest.

`CCNPROXY_TEST_RESOLVE` is a comma-separated list of `NAME[:PORT]=ADDR[:PORT2]`:
- `*.ccnproxy-https=127.0.0.1`: every name below `ccnproxy-https`, any port,
  to 127.0.0.1 (what `address=/ccnproxy-https/127.0.0.1` does in dnsmasq);
- `dynamodb.us-east-1.amazonaws.com:80=127.0.0.1:40123`: that name on port 80
  to 127.0.0.1 port 40123. The client still sends `Host:
  dynamodb.us-east-1.amazonaws.com`, as it would after a DNS override plus a
  port redirect in front of a transparent proxy.
"""

import os
import socket

_original_getaddrinfo = socket.getaddrinfo
_rules = []


def parse(spec):
    """`NAME[:PORT]=ADDR[:PORT2],...` -> [(name, port|None, addr, port2|None)]."""
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        left, sep, right = item.partition("=")
        if not sep or not left or not right:
            raise ValueError(f"CCNPROXY_TEST_RESOLVE: bad entry {item!r}")
        name, _, port = left.partition(":")
        addr, _, new_port = right.partition(":")
        rules.append(
            (
                name.lower().rstrip("."),
                int(port) if port else None,
                addr,
                int(new_port) if new_port else None,
            )
        )
    return rules


def _lookup(host, port):
    host = host.lower().rstrip(".")
    try:
        port_number = int(port) if port is not None else None
    except (TypeError, ValueError):
        port_number = None
    for name, rule_port, addr, new_port in _rules:
        if name.startswith("*."):
            matched = host.endswith(name[1:])
        else:
            matched = host == name
        if matched and (rule_port is None or rule_port == port_number):
            return addr, (new_port if new_port is not None else port)
    return None


def _getaddrinfo(host, port, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host:
        hit = _lookup(host, port)
        if hit is not None:
            return _original_getaddrinfo(hit[0], hit[1], *args, **kwargs)
    return _original_getaddrinfo(host, port, *args, **kwargs)


def install(spec):
    """Resolve per `spec` from now on (replacing earlier rules); '' = off."""
    _rules[:] = parse(spec)
    socket.getaddrinfo = _getaddrinfo if _rules else _original_getaddrinfo


install(os.environ.get("CCNPROXY_TEST_RESOLVE", ""))
