"""Fixtures for the AWS-client suite: a test CA, moto over TLS with SigV4
checking on, the real ccnproxy binary, and AWS clients (CLI v1 subprocesses,
boto3 in process) pointed at it.

All traffic stays on 127.0.0.0/8:
- moto listens on 127.0.0.1:<random> with a certificate for the AWS names;
  the proxy reaches it as `https://<aws name>:443` through
  `--resolve NAME:443:127.0.0.1:<moto port>` and trusts the CA via `--ca-file`.
- Clients reach the proxy by `HTTP_PROXY`/`HTTPS_PROXY` (forward, CONNECT) or
  by name: the resolver shim (`shim/sitecustomize.py`) is the test's hosts
  file. Host mode maps `*.ccnproxy-https` to 127.0.0.1 like the dnsmasq
  wildcard; transparent mode maps `NAME:80` to the proxy's port, so the client
  sends `Host: NAME` exactly as it would behind DNS plus a port redirect.
"""

import hashlib
import importlib.util
import json
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest
import trustme
from botocore.config import Config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BINARY = Path(os.environ.get("CCNPROXY_BIN", ROOT / "target" / "debug" / "ccnproxy"))
SHIM = HERE / "shim"
AWS_CLI = Path(sys.executable).parent / "aws"
REGION = "us-east-1"
STARTUP_TIMEOUT = 60
# The bucket the CONNECT test uses: virtual-hosted, so its name is pinned too.
CONNECT_BUCKET = "ccn-connect"
# Every AWS name a test reaches; the proxy pins each to moto.
AWS_NAMES = (
    "s3.amazonaws.com",
    f"{CONNECT_BUCKET}.s3.amazonaws.com",
    "dynamodb.us-east-1.amazonaws.com",
    "dynamodb.us-west-2.amazonaws.com",
    "sts.amazonaws.com",
)

# A developer's own AWS or proxy settings must not leak into the suite.
for _name in list(os.environ):
    if _name.startswith("AWS_") or _name.lower() in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        del os.environ[_name]


def _load_resolver():
    spec = importlib.util.spec_from_file_location("ccnproxy_test_resolver", SHIM / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


resolver_module = _load_resolver()


class Credentials:
    """An access key pair."""

    def __init__(self, access_key, secret_key):
        self.access_key = access_key
        self.secret_key = secret_key

    def env(self):
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


# A key moto has never issued: requests signed with it and reaching moto
# unchanged fail with InvalidClientTokenId.
WRONG = Credentials("AKIAWRONGWRONGWRONG1", "wrong/secret/wrong/secret/wrong/secret00")


# --------------------------------------------------------------------------
# TLS


class Tls:
    def __init__(self, directory):
        ca = trustme.CA()
        leaf = ca.issue_cert(
            "*.amazonaws.com",
            "s3.amazonaws.com",
            "*.s3.amazonaws.com",
            "*.us-east-1.amazonaws.com",
            "*.us-west-2.amazonaws.com",
            "localhost",
            "127.0.0.1",
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "cert.pem"
        self.key = directory / "key.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        leaf.private_key_pem.write_to_path(str(self.key))
        with open(self.cert, "wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())

    def client_context(self):
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    return Tls(tmp_path_factory.mktemp("tls"))


# --------------------------------------------------------------------------
# Processes


def _pump(stream, sink):
    """Copies lines of `stream` into `sink` (a callable) until EOF."""
    for line in iter(stream.readline, ""):
        sink(line.rstrip("\n"))
    stream.close()


class Moto:
    """moto over TLS, recording requests (see moto_server.py)."""

    def __init__(self, tls, log_path):
        self.tls = tls
        self.log = open(log_path, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "moto_server.py"), str(tls.cert), str(tls.key)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        lines = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, lines.put), daemon=True).start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"moto did not start; see {log_path}")
        match = re.fullmatch(r"listening (\d+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"moto said {line!r}; see {log_path}")
        self.port = int(match.group(1))
        self.url = f"https://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None, headers=None):
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(request, context=self.tls.client_context(), timeout=30) as response:
            return response.read()

    def seen(self):
        """Requests moto received since the last `forget`."""
        return json.loads(self._call("GET", "/__seen"))

    def forget(self):
        self._call("DELETE", "/__seen")

    def enable_auth(self):
        # A form content type makes moto answer 500 (TESTING.md).
        self._call("POST", "/moto-api/reset-auth", body=b"0", headers={"Content-Type": "text/plain"})

    def client(self, service, credentials, region=REGION):
        """A boto3 client talking to moto directly (no proxy)."""
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            verify=str(self.tls.ca),
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def moto(tls, tmp_path_factory):
    server = Moto(tls, tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def credentials(moto):
    """The one valid key pair. Bootstrapped with auth off (TESTING.md):
    IAM user, allow-all inline policy, access key; then auth on."""
    bootstrap = Credentials("AKIABOOTSTRAP0000000", "bootstrap")
    iam = moto.client("iam", bootstrap)
    iam.create_user(UserName="ccnproxy-test")
    iam.put_user_policy(
        UserName="ccnproxy-test",
        PolicyName="allow-all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="ccnproxy-test")["AccessKey"]
    moto.enable_auth()
    good = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    # The suite means nothing unless moto now checks signatures.
    moto.client("sts", good).get_caller_identity()
    with pytest.raises(Exception) as unknown:
        moto.client("dynamodb", WRONG).list_tables()
    assert "UnrecognizedClientException" in str(unknown.value) or "InvalidClientTokenId" in str(unknown.value)
    with pytest.raises(Exception) as forged:
        moto.client("dynamodb", Credentials(good.access_key, "not-the-secret")).list_tables()
    assert "InvalidSignatureException" in str(forged.value) or "SignatureDoesNotMatch" in str(forged.value)
    return good


class Proxy:
    """The ccnproxy binary on 127.0.0.1, port chosen by the system."""

    def __init__(self, args, env, tls, moto):
        resolves = [arg for name in AWS_NAMES for arg in ("--resolve", f"{name}:443:127.0.0.1:{moto.port}")]
        self.cmd = [
            str(BINARY),
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--ca-file",
            str(tls.ca),
            "--allow-cidr",
            "127.0.0.0/8",
            "--access-log-dir",
            "stdout",
            "--access-log-format",
            "json",
            *resolves,
            *args,
        ]
        self.stderr = []
        self.access_log = []
        self._lock = threading.Condition()
        listening = queue.Queue()

        def on_stderr(line):
            with self._lock:
                self.stderr.append(line)
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                listening.put(int(found.group(1)))

        def on_stdout(line):
            with self._lock:
                self.access_log.append(line)
                self._lock.notify_all()

        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        threading.Thread(target=_pump, args=(self.proc.stderr, on_stderr), daemon=True).start()
        threading.Thread(target=_pump, args=(self.proc.stdout, on_stdout), daemon=True).start()
        try:
            self.port = listening.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"ccnproxy did not start: {' '.join(self.cmd)}\n" + "\n".join(self.stderr))
        self.url = f"http://127.0.0.1:{self.port}"

    def log_lines(self, count, timeout=10):
        """The first `count` access-log lines, waiting for them (the log is
        written off the request path)."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.access_log) >= count, timeout=timeout)
            return list(self.access_log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def proxy_env(credentials=None):
    """The proxy's environment: no AWS settings, or exactly `credentials`
    (with region and IMDS pinned so the chain never waits on the network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.setdefault("RUST_LOG", "warn")
    if credentials is not None:
        env.update(credentials.env())
        env.update(
            {
                "AWS_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/nonexistent/ccnproxy-test/config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/ccnproxy-test/credentials",
            }
        )
    return env


@pytest.fixture
def start_proxy(tls, moto):
    """Starts a proxy: `start_proxy("--sign", credentials=creds)`. Stopped at
    the end of the test; it must exit 0 on SIGTERM."""
    started = []

    def start(*args, credentials=None):
        proxy = Proxy(list(args), proxy_env(credentials), tls, moto)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        code = proxy.stop()
        assert code == 0, f"ccnproxy exited {code}:\n" + "\n".join(proxy.stderr[-20:])


@pytest.fixture
def resolve():
    """`resolve(spec)` makes this process resolve names per the shim's spec
    (for in-process boto3); undone after the test."""
    yield resolver_module.install
    resolver_module.install("")


# --------------------------------------------------------------------------
# Clients


class Cli:
    """The AWS CLI v1 in a subprocess with a clean environment."""

    def __init__(self, tls, home):
        self.tls = tls
        self.home = home

    def env(self, credentials, http_proxy=None, https_proxy=None, resolve=""):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/nonexistent/ccnproxy-test/config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/ccnproxy-test/credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CA_BUNDLE": str(self.tls.ca),
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
            "NO_PROXY": "",
            "no_proxy": "",
            "PYTHONPATH": str(SHIM),
            "PYTHONDONTWRITEBYTECODE": "1",
            "CCNPROXY_TEST_RESOLVE": resolve,
            **credentials.env(),
        }
        if http_proxy:
            env["HTTP_PROXY"] = env["http_proxy"] = http_proxy
        if https_proxy:
            env["HTTPS_PROXY"] = env["https_proxy"] = https_proxy
        return env

    def run(self, args, env, check=True):
        done = subprocess.run([str(AWS_CLI), *args], env=env, capture_output=True, text=True, timeout=180)
        if check:
            assert done.returncode == 0, f"aws {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="session")
def cli(tls, tmp_path_factory):
    return Cli(tls, tmp_path_factory.mktemp("home"))


def boto_client(service, credentials, endpoint_url, tls, proxies=None, region=REGION):
    """A boto3 client in this process; `proxies` as botocore takes them."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        verify=str(tls.ca),
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(proxies=proxies or {}, retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="session")
def big_file(tmp_path_factory):
    """20 MiB of random bytes (multipart upload: 3 parts of <= 8 MiB)."""
    path = tmp_path_factory.mktemp("data") / "big.bin"
    path.write_bytes(os.urandom(20 << 20))
    return path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def access_key_of(authorization):
    """The access key id in a SigV4 Authorization value."""
    found = re.search(r"Credential=([^/]+)/", authorization or "")
    return found.group(1) if found else None
