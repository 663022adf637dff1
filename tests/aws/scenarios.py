"""What a test does with S3 and DynamoDB, whatever the mode; and checks on
what moto received."""

import hashlib
import hmac
import re

from conftest import access_key_of, sha256


def s3_cli_roundtrip(cli, env, endpoint, bucket, big_file, tmp_path):
    """Create a bucket, upload 20 MiB (multipart, 100-continue), download it
    byte-identical, list, delete — all with the AWS CLI."""
    ep = ["--endpoint-url", endpoint]
    cli.run(["s3", "mb", f"s3://{bucket}", *ep], env)
    cli.run(["s3", "cp", str(big_file), f"s3://{bucket}/big.bin", *ep], env)
    listing = cli.run(["s3", "ls", f"s3://{bucket}/", *ep], env).stdout
    assert re.search(rf"\b{big_file.stat().st_size}\s+big\.bin\b", listing), listing
    copy = tmp_path / "copy.bin"
    cli.run(["s3", "cp", f"s3://{bucket}/big.bin", str(copy), *ep], env)
    assert sha256(copy) == sha256(big_file), "the download differs from the upload"
    cli.run(["s3", "rm", f"s3://{bucket}/big.bin", *ep], env)
    cli.run(["s3", "rb", f"s3://{bucket}", *ep], env)
    assert bucket not in cli.run(["s3", "ls", *ep], env).stdout


def assert_multipart_with_continue(seen, parts=3):
    """The upload went as `parts` UploadPart requests, each announcing
    `Expect: 100-continue` to the origin (the proxy passes it on)."""
    uploads = [r for r in seen if r["method"] == "PUT" and "partNumber=" in r["query"]]
    assert len(uploads) == parts, [(r["method"], r["path"], r["query"]) for r in seen]
    assert all(r["expect"] == "100-continue" for r in uploads), [r["expect"] for r in uploads]
    return uploads


def dynamodb_roundtrip(ddb, table):
    """Create a table, put, get, scan, delete."""
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "k1"}, "v": {"S": "hello"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "k2"}, "v": {"S": "world " * 100}})
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "k1"}}, ConsistentRead=True)["Item"]
    assert item["v"]["S"] == "hello"
    scanned = ddb.scan(TableName=table)["Items"]
    assert sorted(i["pk"]["S"] for i in scanned) == ["k1", "k2"]
    ddb.delete_table(TableName=table)


def assert_all_reached(seen, host, access_key):
    """Every request moto got carried `host` and was signed with `access_key`."""
    assert seen, "moto received nothing"
    hosts = {r["host"] for r in seen}
    assert hosts == {host}, hosts
    keys = {access_key_of(r["authorization"]) for r in seen}
    assert keys == {access_key}, keys


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_chunk_signatures(body, authorization, amz_date, secret):
    """Checks, independently of ccnproxy's code, every chunk signature of a
    signed `aws-chunked` body (and its trailer signature, if any) against
    the seed signature in `authorization`. Returns the decoded payload."""
    seed = re.search(r"Signature=([0-9a-f]{64})", authorization).group(1)
    scope = re.search(r"Credential=[^/]+/([^,\s]+)", authorization).group(1)
    date, region, service, _ = scope.split("/")
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)

    def sign(text):
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()

    previous, pos, payload = seed, 0, b""
    while True:
        end = body.index(b"\r\n", pos)
        size_text, signature = body[pos:end].decode().split(";chunk-signature=")
        size = int(size_text, 16)
        data = body[end + 2 : end + 2 + size]
        want = sign(
            f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n"
            + hashlib.sha256(data).hexdigest()
        )
        assert signature == want, f"chunk at {pos}: {signature} != {want}"
        previous, payload = signature, payload + data
        pos = end + 2 + size + (2 if size else 0)
        if size == 0:
            break
    canonical = b""
    for line in body[pos:].split(b"\r\n"):
        if line.startswith(b"x-amz-trailer-signature:"):
            signature = line.split(b":", 1)[1].decode()
            want = sign(
                f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{previous}\n"
                + hashlib.sha256(canonical).hexdigest()
            )
            assert signature == want, "trailer signature"
        elif line:
            name, value = line.split(b":", 1)
            canonical += name.lower() + b":" + value.strip() + b"\n"
    return payload
