"""Forward (`HTTP_PROXY`) and transparent (AWS name resolved to the proxy)
modes: the client's own signature reaches moto intact and verifies."""

import pytest
from conftest import boto_client
from scenarios import (
    assert_all_reached,
    assert_multipart_with_continue,
    dynamodb_roundtrip,
    s3_cli_roundtrip,
)


def client_route(mode, proxy, name):
    """(HTTP_PROXY value, resolver spec) that sends `http://name` via `proxy`."""
    if mode == "forward":
        return proxy.url, ""
    return None, f"{name}:80=127.0.0.1:{proxy.port}"


@pytest.mark.parametrize("mode", ["forward", "transparent"])
def test_s3_with_the_cli(mode, start_proxy, cli, moto, credentials, big_file, tmp_path):
    proxy = start_proxy()
    http_proxy, spec = client_route(mode, proxy, "s3.amazonaws.com")
    env = cli.env(credentials, http_proxy=http_proxy, resolve=spec)
    moto.forget()
    s3_cli_roundtrip(cli, env, "http://s3.amazonaws.com", f"ccn-{mode}", big_file, tmp_path)
    seen = moto.seen()
    assert_all_reached(seen, "s3.amazonaws.com", credentials.access_key)
    assert_multipart_with_continue(seen)
    assert all(r["x-chocon-ver"] for r in seen), "every request went through the proxy"


@pytest.mark.parametrize("mode", ["forward", "transparent"])
def test_dynamodb_with_boto3(mode, start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy()
    http_proxy, spec = client_route(mode, proxy, "dynamodb.us-east-1.amazonaws.com")
    resolve(spec)
    ddb = boto_client(
        "dynamodb",
        credentials,
        "http://dynamodb.us-east-1.amazonaws.com",
        tls,
        proxies={"http": http_proxy} if http_proxy else None,
    )
    moto.forget()
    dynamodb_roundtrip(ddb, f"table-{mode}")
    seen = moto.seen()
    assert_all_reached(seen, "dynamodb.us-east-1.amazonaws.com", credentials.access_key)
    assert all(r["x-chocon-ver"] for r in seen)
    assert len(proxy.log_lines(len(seen))) >= len(seen), "one access-log line per request"
