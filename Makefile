# bpfilter-nft — run `make help` for the targets.

GO       ?= go
BIN      := bin/bpfilter-nft
PKGS     := ./...
CORPUS   ?= ../shared/corpus

.PHONY: help build test demo conformance fuzz bench loadtest lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/bpfilter-nft
	$(GO) build -o $(BIN) ./cmd/bpfilter-nft

test: ## run every test (as root: BPF and network-namespace tests run for real) and count them
	scripts/test

demo: build ## scratch namespace pair, a real ruleset on XDP, packets dropped and counted
	$(BIN) demo

conformance: build ## compile nftables' own rule tests; print compiled/refused/mismatched counts
	$(BIN) conformance --corpus $(CORPUS)/nftables-py
	$(BIN) conformance --iptables $(CORPUS)/iptables-ext

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	scripts/fuzz $${FUZZTIME:-30s}

bench: build ## per-packet cost, compile and load time per program type, ruleset kind and size (bpfilter-nft bench; see BENCHMARKS.md)
	$(BIN) bench

loadtest: ## the daemon load test at full scale: 50 clients, 10 namespaces, 20 reloads each
	BPFNFT_LOAD_FULL=1 $(GO) test -count=1 -run '^TestLoad$$' -v ./daemon/

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

clean:
	rm -rf bin
