# Everything a fresh machine needs: `make demo` and `make test` each install first.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install demo test lint bench clean

install:
	$(PIP) install -q -e '.[dev,onnx,tensorboard]'

# A newcomer's first minute: the conditional DCGAN recipe on the embedded mnist-mini data
# (offline), then one row per digit and the reference classifier's verdict on it.
demo: install
	gancli train cdcgan --dataset mnist-mini --epochs $(DEMO_EPOCHS) --name demo-$$(date +%Y%m%d-%H%M%S)
	gancli sample cdcgan --n 100 --out checkpoints/demo_samples.png
	@echo "demo: one row per digit in checkpoints/demo_samples.png; the run (grids per epoch, loss curves) in checkpoints/cdcgan/"

DEMO_EPOCHS ?= 12

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
