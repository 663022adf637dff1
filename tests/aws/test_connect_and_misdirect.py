"""`HTTPS_PROXY` (CONNECT tunnels) and a request the proxy must not fix."""

import pytest
from botocore.exceptions import ClientError
from conftest import CONNECT_BUCKET, access_key_of, boto_client


def test_https_proxy_tunnels_the_cli_to_the_origin(start_proxy, cli, moto, credentials, tmp_path):
    proxy = start_proxy()
    # Default endpoints (https://…amazonaws.com): the CLI opens CONNECT
    # tunnels and speaks TLS with moto through them, trusting the test CA.
    env = cli.env(credentials, https_proxy=proxy.url)
    small = tmp_path / "small.txt"
    small.write_bytes(b"through the tunnel\n" * 1000)
    moto.forget()
    tables = cli.run(["dynamodb", "list-tables"], env).stdout
    assert "TableNames" in tables
    cli.run(["s3", "mb", f"s3://{CONNECT_BUCKET}"], env)
    cli.run(["s3", "cp", str(small), f"s3://{CONNECT_BUCKET}/small.txt"], env)
    copy = tmp_path / "copy.txt"
    cli.run(["s3", "cp", f"s3://{CONNECT_BUCKET}/small.txt", str(copy)], env)
    assert copy.read_bytes() == small.read_bytes()
    cli.run(["s3", "rb", "--force", f"s3://{CONNECT_BUCKET}"], env)

    seen = moto.seen()
    hosts = {r["host"] for r in seen}
    assert hosts == {"dynamodb.us-east-1.amazonaws.com", f"{CONNECT_BUCKET}.s3.amazonaws.com"}, hosts
    # Inside a tunnel the proxy sees nothing: no X-Chocon-Ver was added.
    assert not any(r["x-chocon-ver"] for r in seen)
    assert {access_key_of(r["authorization"]) for r in seen} == {credentials.access_key}
    # The upload went as the CLI sends it over TLS (aws-chunked, checksum
    # trailer), end to end.
    assert any(r["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for r in seen)
    log = proxy.log_lines(1)
    assert any("CONNECT" in line for line in log), log


def test_a_request_signed_for_another_host_is_not_fixed(start_proxy, moto, credentials, tls):
    proxy = start_proxy()
    ddb = boto_client(
        "dynamodb", credentials, "http://dynamodb.us-east-1.amazonaws.com", tls, proxies={"http": proxy.url}
    )

    def redirect(request, **_):
        # After signing: the signature covers Host dynamodb.us-east-1…, the
        # request goes to dynamodb.us-west-2… (Host follows the URL).
        request.url = request.url.replace("us-east-1", "us-west-2")

    ddb.meta.events.register("before-send.dynamodb.ListTables", redirect)
    moto.forget()
    with pytest.raises(ClientError) as err:
        ddb.list_tables()
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    error = response["Error"]
    assert "SignatureDoesNotMatch" in error["Code"] + error.get("Message", ""), response
    [seen] = moto.seen()
    assert seen["host"] == "dynamodb.us-west-2.amazonaws.com", "the proxy kept the Host the client sent"
    assert access_key_of(seen["authorization"]) == credentials.access_key
