# ccnproxy — the two commands that matter: `make run` and `make test`.
CARGO ?= cargo
ARGS  ?=

.PHONY: build run test test-rust test-aws bench soak fuzz lint deny clean man

build:
	$(CARGO) build --release

# Runs the proxy with the defaults (0.0.0.0:3000, AWS hosts only, log to stderr).
run:
	$(CARGO) run --release -- $(ARGS)

# Unit tests, the integration crate (real binary, real local origins), then
# the AWS-client suite (AWS CLI / boto3 against moto) when its runner exists.
test: test-rust test-aws

test-rust:
	$(CARGO) test --all-targets

# The AWS-client suite is part of `make test`: a missing or non-executable
# runner is an error, not a skip.
test-aws:
	@if [ ! -x tests/aws/run.sh ]; then echo "tests/aws/run.sh is missing or not executable" >&2; exit 1; fi
	tests/aws/run.sh

# Every side-by-side benchmark (docs/bench.md); the soak has its own target.
BENCHES ?= $(filter-out soak,$(basename $(notdir $(wildcard benches/*.rs))))
bench:
	$(CARGO) bench $(addprefix --bench ,$(BENCHES))

# A benchmark, not a test: the release binary under mixed traffic for
# SOAK_SECONDS (many clients and origin names, large and small bodies,
# origin restarts, DNS changes); prints RSS, fds, threads and tasks every few
# seconds and the slope of RSS after warm-up.
SOAK_SECONDS ?= 600
soak:
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) bench --bench soak

# Each fuzz target for FUZZ_SECONDS (cargo-fuzz on the stable toolchain via
# RUSTC_BOOTSTRAP; installs cargo-fuzz on first use). `make test` replays
# every corpus (tests/fuzz_corpus.rs) without cargo-fuzz.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= route scope logformat chunked h2c_authority proxy_header head
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# The quality gate `.ci/run` runs before the tests: formatting, clippy with
# every warning an error (the `[lints]` table in Cargo.toml included).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Supply chain (deny.toml): every dependency's licence on the allow-list,
# duplicate versions reviewed, no wildcard versions, crates.io as the only
# source. Advisories are not checked (they need the RustSec database; run
# `cargo deny check advisories` by hand). Installs cargo-deny on first use.
deny:
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check licenses bans sources

# The man page, generated from the flag definitions (`man ./ccnproxy.1`).
man:
	$(CARGO) run --quiet -- man > ccnproxy.1

clean:
	$(CARGO) clean
