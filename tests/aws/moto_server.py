"""moto's WSGI app over TLS on 127.0.0.1, with keep-alive, recording what it
receives. Run by conftest.py as a subprocess:

    python moto_server.py CERT KEY

Prints `listening PORT` on stdout once it accepts connections.

Werkzeug's threaded server speaks HTTP/1.1 with keep-alive (moto's own
`moto_server` closes after each response) and answers `Expect: 100-continue`.
Every request but the recorder's own is noted: method, path, Host, the SigV4
Authorization and a few x-amz headers (and the whole body of signed
`aws-chunked` uploads); `GET /__seen` returns them as JSON,
`DELETE /__seen` forgets them. moto itself routes by the credential scope and
checks the signature over the headers it received, Host included.
"""

import io
import json
import ssl
import sys
import threading

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

RECORDED_HEADERS = (
    "authorization",
    "x-amz-date",
    "x-amz-decoded-content-length",
    "content-length",
    "expect",
    "content-encoding",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "x-chocon-ver",
    "user-agent",
)


def recording(app):
    seen = []
    lock = threading.Lock()

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == "/__seen":
            with lock:
                body = json.dumps(seen).encode()
                if environ["REQUEST_METHOD"] == "DELETE":
                    seen.clear()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        entry = {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "host": environ.get("HTTP_HOST"),
        }
        for name in RECORDED_HEADERS:
            key = name.upper().replace("-", "_")
            entry[name] = environ.get(key if key == "CONTENT_LENGTH" else "HTTP_" + key)
        if (entry["x-amz-content-sha256"] or "").startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
            # Kept whole so a test can check the chunk signatures.
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            entry["body"] = body.decode("latin-1")
        with lock:
            seen.append(entry)
        return app(environ, start_response)

    return wsgi


def main():
    cert, key = sys.argv[1], sys.argv[2]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = recording(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1",
        0,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=context,
    )
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
