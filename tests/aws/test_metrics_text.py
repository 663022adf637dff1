"""`/metrics` in both expositions, read by the Prometheus Python client's own
parsers: Prometheus text 0.0.4 when the scraper's `Accept` prefers it, and
OpenMetrics 1.0 otherwise (Prometheus's own `Accept` prefers OpenMetrics)."""

import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_004

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def scrape(proxy, accept):
    req = urllib.request.Request(f"{proxy.url}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def samples_in(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_a_scraper_asking_for_text_0_0_4_gets_it_and_it_parses(start_proxy):
    proxy = start_proxy()
    # A request of each kind the proxy answers itself, so the request
    # counters and histograms have series.
    urllib.request.urlopen(f"{proxy.url}/healthz", timeout=10).read()
    ctype, text = scrape(proxy, "text/plain;version=0.0.4")
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    assert "# EOF" not in text and "# UNIT" not in text
    families = {f.name: f for f in parse_004(text)}
    assert families["ccnproxy_requests"].type == "counter", families["ccnproxy_requests"]
    assert families["ccnproxy_request_duration_seconds"].type == "histogram"
    assert families["ccnproxy_uptime_seconds"].type == "gauge"
    # Every family has its declared type: a sample whose name did not match
    # its family's TYPE line would have started an untyped family.
    untyped = [f.name for f in families.values() if f.type in ("untyped", "unknown")]
    assert not untyped, untyped
    parsed = sum(len(f.samples) for f in families.values())
    assert parsed == samples_in(text), "every sample line was read"
    requests = [s for s in families["ccnproxy_requests"].samples if s.name == "ccnproxy_requests_total"]
    assert sum(s.value for s in requests) >= 1, requests


def test_prometheus_own_accept_and_no_accept_get_openmetrics_that_parses(start_proxy):
    proxy = start_proxy()
    urllib.request.urlopen(f"{proxy.url}/healthz", timeout=10).read()
    for accept in (PROMETHEUS_ACCEPT, "*/*"):
        ctype, text = scrape(proxy, accept)
        assert ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype
        families = {f.name: f for f in parse_openmetrics(text)}
        assert families["ccnproxy_requests"].type == "counter"
