# The README's two commands: `make demo` and `make test`. Each runs the idempotent setup first.
# `make bench` regenerates the measured comparisons in benchmarks/BENCHMARKS.md (hours on 2 cores).
.PHONY: setup demo test bench
setup:
	@bash scripts/setup.sh
demo: setup
	@bash scripts/demo.sh
test: setup
	@bash scripts/test.sh
bench: setup
	@bash scripts/bench.sh
