# Everything a fresh machine needs: `make demo` and `make test` each install first.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install demo test lint bench clean

install:
	$(PIP) install -q -e '.[dev]'

demo: install
	gancli train dcgan --dataset mnist-mini --epochs 5 --name demo-$$(date +%Y%m%d-%H%M%S)
	gancli sample dcgan --n 64 --out checkpoints/demo_samples.png
	@echo "demo: run folder, grids and loss curves in checkpoints/dcgan/; samples in checkpoints/demo_samples.png"

test: install
	$(PYTHON) -m pytest tests

# Speed of every model, lever, sampler and start-up in one table (about 4 minutes on 2
# CPU cores); writes benchmarks/results/<device>.json. make bench BENCH_ARGS=--quick
bench: install
	$(PYTHON) benchmarks/bench.py $(BENCH_ARGS)

lint:
	ruff check gancli tests benchmarks

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
