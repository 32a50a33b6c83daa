# The README's two commands: `make demo` and `make test`. Each runs the idempotent setup first.
.PHONY: setup demo test
setup:
	@bash scripts/setup.sh
demo: setup
	@bash scripts/demo.sh
test: setup
	@bash scripts/test.sh
