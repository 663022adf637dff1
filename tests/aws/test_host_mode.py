"""Host mode (`--endpoint-url http://NAME.ccnproxy-https:PORT`): the proxy
rewrites Host, which breaks the client's signature. Without `--sign` the
origin's signature error comes back as is; with `--sign` the proxy signs with
its own credentials and the client's (wrong) ones do not matter."""

import base64
import http.client
import zlib

import pytest
from botocore.exceptions import ClientError
from conftest import WRONG, Credentials, access_key_of, boto_client
from scenarios import (
    assert_all_reached,
    assert_multipart_with_continue,
    dynamodb_roundtrip,
    s3_cli_roundtrip,
    verify_chunk_signatures,
)

LABEL = "*.ccnproxy-https=127.0.0.1"


def host_endpoint(name, proxy):
    return f"http://{name}.ccnproxy-https:{proxy.port}"


def test_without_sign_the_dynamodb_signature_error_comes_back(start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy()
    resolve(LABEL)
    ddb = boto_client("dynamodb", credentials, host_endpoint("dynamodb.us-east-1.amazonaws.com", proxy), tls)
    moto.forget()
    with pytest.raises(ClientError) as err:
        ddb.list_tables()
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # moto answers DynamoDB's signature errors in XML; botocore then keeps
    # the document as the message.
    error = response["Error"]
    assert "SignatureDoesNotMatch" in error["Code"] + error.get("Message", ""), response
    # It is moto's answer: the request reached it, Host rewritten, the
    # client's signature untouched.
    [seen] = moto.seen()
    assert seen["host"] == "dynamodb.us-east-1.amazonaws.com"
    assert access_key_of(seen["authorization"]) == credentials.access_key


def test_without_sign_the_s3_signature_error_comes_back(start_proxy, cli, moto, credentials):
    proxy = start_proxy()
    env = cli.env(credentials, resolve=LABEL)
    moto.forget()
    done = cli.run(
        ["s3api", "list-buckets", "--endpoint-url", host_endpoint("s3.amazonaws.com", proxy)], env, check=False
    )
    assert done.returncode != 0
    assert "SignatureDoesNotMatch" in done.stderr, done.stderr
    [seen] = moto.seen()
    assert seen["host"] == "s3.amazonaws.com"


def test_with_sign_s3_works_with_wrong_client_credentials(start_proxy, cli, moto, credentials, big_file, tmp_path):
    proxy = start_proxy("--sign", credentials=credentials)
    env = cli.env(WRONG, resolve=LABEL)
    moto.forget()
    s3_cli_roundtrip(cli, env, host_endpoint("s3.amazonaws.com", proxy), "ccn-host-sign", big_file, tmp_path)
    seen = moto.seen()
    assert_all_reached(seen, "s3.amazonaws.com", credentials.access_key)
    uploads = assert_multipart_with_continue(seen)
    # S3 bodies stream: the proxy signs them as UNSIGNED-PAYLOAD.
    assert {r["x-amz-content-sha256"] for r in uploads} == {"UNSIGNED-PAYLOAD"}


def test_with_sign_dynamodb_works_with_wrong_client_credentials(start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy("--sign", credentials=credentials)
    resolve(LABEL)
    ddb = boto_client("dynamodb", WRONG, host_endpoint("dynamodb.us-east-1.amazonaws.com", proxy), tls)
    moto.forget()
    dynamodb_roundtrip(ddb, "table-host-sign")
    assert_all_reached(moto.seen(), "dynamodb.us-east-1.amazonaws.com", credentials.access_key)


def test_with_sign_a_client_without_credentials_works(start_proxy, cli, moto, credentials):
    proxy = start_proxy("--sign", credentials=credentials)
    env = cli.env(WRONG, resolve=LABEL)
    moto.forget()
    endpoint = host_endpoint("dynamodb.us-east-1.amazonaws.com", proxy)
    done = cli.run(["dynamodb", "list-tables", "--no-sign-request", "--endpoint-url", endpoint], env)
    assert "TableNames" in done.stdout
    assert_all_reached(moto.seen(), "dynamodb.us-east-1.amazonaws.com", credentials.access_key)


def test_with_sign_bodies_over_the_limit_get_413(start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy("--sign", "--sign-max-body", "4096", credentials=credentials)
    resolve(LABEL)
    ddb = boto_client("dynamodb", WRONG, host_endpoint("dynamodb.us-east-1.amazonaws.com", proxy), tls)
    ddb.create_table(
        TableName="table-limit",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto.forget()
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName="table-limit", Item={"pk": {"S": "big"}, "v": {"S": "x" * 8192}})
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert moto.seen() == [], "a body too large to sign never reaches the origin"
    ddb.put_item(TableName="table-limit", Item={"pk": {"S": "small"}, "v": {"S": "x" * 100}})
    ddb.delete_table(TableName="table-limit")


def _put_chunked(proxy, bucket, key, body, headers):
    """PUT an `aws-chunked` body by hand in host mode; botocore only sends
    aws-chunked over HTTPS, and a host-mode client speaks plain HTTP."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request(
            "PUT",
            f"/{bucket}/{key}",
            body=body,
            headers={
                "Host": f"s3.amazonaws.com.ccnproxy-https:{proxy.port}",
                "Content-Encoding": "aws-chunked",
                "Content-Length": str(len(body)),
                "X-Amz-Date": "20240101T000000Z",
                # Signed by some client with a key the origin does not know.
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAWRONGWRONGWRONG1/20240101/us-east-1/s3/"
                "aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date, "
                "Signature=" + "0" * 64,
                **headers,
            },
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _chunks(payload, size, signature=None):
    """`payload` as aws-chunked chunks of `size`, up to the final chunk's line."""
    ext = f";chunk-signature={signature}" if signature else ""
    out = b""
    for start in range(0, len(payload), size):
        piece = payload[start : start + size]
        out += f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n"
    return out + f"0{ext}\r\n".encode()


def test_with_sign_aws_chunked_uploads_keep_their_encoding(start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy("--sign", credentials=credentials)
    resolve(LABEL)
    s3 = boto_client("s3", WRONG, host_endpoint("s3.amazonaws.com", proxy), tls)
    s3.create_bucket(Bucket="ccn-chunked")
    payload = bytes(range(256)) * 300  # 76800 bytes: several chunks

    # STREAMING-UNSIGNED-PAYLOAD-TRAILER: head re-signed, body untouched.
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    body = _chunks(payload, 32768) + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    moto.forget()
    status, answer = _put_chunked(
        proxy,
        "ccn-chunked",
        "unsigned-trailer",
        body,
        {
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": str(len(payload)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
    )
    assert status == 200, answer
    [seen] = moto.seen()
    assert seen["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert access_key_of(seen["authorization"]) == credentials.access_key
    assert s3.get_object(Bucket="ccn-chunked", Key="unsigned-trailer")["Body"].read() == payload

    # STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signature recomputed,
    # lengths unchanged.
    body = _chunks(payload, 32768, signature="f" * 64) + b"\r\n"
    moto.forget()
    status, answer = _put_chunked(
        proxy,
        "ccn-chunked",
        "signed-chunks",
        body,
        {
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "x-amz-decoded-content-length": str(len(payload)),
        },
    )
    assert status == 200, answer
    [seen] = moto.seen()
    assert int(seen["content-length"]) == len(body)
    received = seen["body"].encode("latin-1")
    assert len(received) == len(body) and received != body
    decoded = verify_chunk_signatures(received, seen["authorization"], seen["x-amz-date"], credentials.secret_key)
    assert decoded == payload
    assert s3.get_object(Bucket="ccn-chunked", Key="signed-chunks")["Body"].read() == payload

    for key in ("unsigned-trailer", "signed-chunks"):
        s3.delete_object(Bucket="ccn-chunked", Key=key)
    s3.delete_bucket(Bucket="ccn-chunked")


def test_with_sign_s3_keys_that_need_escaping(start_proxy, moto, credentials, tls, resolve):
    proxy = start_proxy("--sign", credentials=credentials)
    resolve(LABEL)
    s3 = boto_client("s3", WRONG, host_endpoint("s3.amazonaws.com", proxy), tls)
    s3.create_bucket(Bucket="ccn-escaping")
    keys = ["dir/a b+c=d.txt", "ünïcödé/ключ", "x%2Fy", "tilde~and*star"]
    for key in keys:
        s3.put_object(Bucket="ccn-escaping", Key=key, Body=key.encode())
    listed = s3.list_objects_v2(Bucket="ccn-escaping", Prefix="")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket="ccn-escaping", Key=key)["Body"].read() == key.encode()
        s3.delete_object(Bucket="ccn-escaping", Key=key)
    s3.delete_bucket(Bucket="ccn-escaping")


def test_with_sign_client_credentials_only_known_clients_are_re_signed(start_proxy, cli, moto, credentials, tmp_path):
    """`--sign --sign-client-credentials`: the CLI signing with a key from the
    file goes through, re-signed with the proxy's; any other client gets
    403 from the proxy and moto sees nothing."""
    client = Credentials("AKIDTEAMA0000000000", "team-a-secret/0000000000000000000000000")
    keys = tmp_path / "clients"
    keys.write_text(f"# teams\n{client.access_key} {client.secret_key} team-a\n")
    proxy = start_proxy("--sign", "--sign-client-credentials", str(keys), credentials=credentials)
    ddb = host_endpoint("dynamodb.us-east-1.amazonaws.com", proxy)
    s3 = host_endpoint("s3.amazonaws.com", proxy)
    moto.forget()
    done = cli.run(["dynamodb", "list-tables", "--endpoint-url", ddb], cli.env(client, resolve=LABEL))
    assert "TableNames" in done.stdout
    assert_all_reached(moto.seen(), "dynamodb.us-east-1.amazonaws.com", credentials.access_key)
    moto.forget()
    cli.run(["s3api", "list-buckets", "--endpoint-url", s3], cli.env(client, resolve=LABEL))
    assert_all_reached(moto.seen(), "s3.amazonaws.com", credentials.access_key)

    moto.forget()
    for env, extra in ((cli.env(WRONG, resolve=LABEL), []), (cli.env(client, resolve=LABEL), ["--no-sign-request"])):
        done = cli.run(["dynamodb", "list-tables", "--endpoint-url", ddb, *extra], env, check=False)
        assert done.returncode != 0, done.stdout
        assert "403" in done.stderr or "sign-client-credentials" in done.stderr, done.stderr
    assert moto.seen() == [], "a request that failed verification reached moto"
