# PDE surrogates: every target creates the virtual environment when it is missing.
# Override the torch build with `make setup TORCH=2.13.0` (or any version pip can find).

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= 2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(TORCH)

DEMO_DIR  := outputs/demo
DEMO_DATA := datasets/darcy_demo

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-full test-blas bench serve clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,serve,sweep,slurm]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)  ## Create .venv and install the package (torch pinned first, TORCH=...)

demo: $(STAMP)  ## Generate a small Darcy dataset, train an FNO, evaluate it, print where results are
	$(BIN)/surrogates-generate pde=darcy resolution=32 n_train=256 n_val=32 n_test=64 name=darcy_demo
	rm -rf $(DEMO_DIR)  # a rerun must not evaluate the previous run's checkpoint
	$(BIN)/surrogates-train experiment=darcy_fno_demo hydra.run.dir=$(DEMO_DIR)/train
	$(BIN)/surrogates-evaluate ckpt=$(DEMO_DIR)/train/checkpoints/best.ckpt data_dir=$(DEMO_DATA) hydra.run.dir=$(DEMO_DIR)/evaluate
	@echo ""
	@echo "Demo finished."
	@echo "  dataset:     $(DEMO_DATA)/{train,val,test}.h5"
	@echo "  checkpoint:  $(DEMO_DIR)/train/checkpoints/best.ckpt"
	@echo "  curves:      $(DEMO_DIR)/train/curves.png"
	@echo "  metrics:     $(DEMO_DIR)/evaluate/metrics.json"
	@echo "  figure:      $(DEMO_DIR)/evaluate/comparison.png"

test: $(STAMP)  ## Run the fast test suite (no tests marked slow)
	$(BIN)/python -m pytest -q -m "not slow"

test-full: $(STAMP)  ## Run every test, slow ones included
	$(BIN)/python -m pytest -q

test-blas: $(STAMP)  ## Run the numerics tests with BLAS and torch on 1, then 2 threads (two summation orders)
	$(BIN)/python -m pytest -q -m "not slow" --threads 1 tests/solvers tests/nn tests/test_metrics.py tests/models
	$(BIN)/python -m pytest -q -m "not slow" --threads 2 tests/solvers tests/nn tests/test_metrics.py tests/models

BENCH_EPOCHS ?= 25

bench: $(STAMP)  ## Run the benchmarks under tools/ and regenerate docs/benchmarks.md (BENCH_EPOCHS=25)
	$(BIN)/surrogates-generate pde=darcy resolution=64 n_train=1000 n_val=100 n_test=200 name=darcy_64
	$(BIN)/python tools/bench_fno_darcy.py --data-dir datasets/darcy_64 --epochs $(BENCH_EPOCHS)
	$(BIN)/surrogates-generate pde=burgers resolution=256 n_train=1000 n_val=100 n_test=200 name=burgers_256
	$(BIN)/python tools/bench_operators.py --epochs $(BENCH_EPOCHS)
	$(BIN)/python tools/bench_pcg.py --sizes 128 256 512 --threads 1 --budget 30
	$(BIN)/python tools/bench_reduced_basis.py
	$(BIN)/python tools/bench_logdet.py --narrow-degrees 4,6,8,10
	$(BIN)/python tools/bench_pig.py
	$(BIN)/python tools/bench_pde_refiner.py
	$(BIN)/python tools/bench_hard_constraints.py --threads 1
	$(BIN)/python tools/train_learned_preconditioner.py --resolution 32 --n-train 32 --n-test 10 --epochs 40 --threads 1 --eval-resolutions 64
	$(BIN)/python tools/load_test_serve.py
	$(BIN)/surrogates-generate pde=navier_stokes resolution=64 pde.n_snapshots=5 pde.final_time=1.0 pde.dt=0.02 n_train=100 n_val=10 n_test=40 name=ns_64
	$(BIN)/surrogates-generate pde=darcy resolution=256 n_train=24 n_val=4 n_test=8 name=darcy_256
	$(BIN)/python tools/bench_tfno.py --problems darcy ns --seeds 0 1 2 --epochs 6 --n-train 80 --batch-size 10 --seeds-256 0 1 2 --epochs-256 4 --memory-steps 2 --threads 1
	$(BIN)/python tools/bench_dcdm.py --resolution 64 --eval-resolutions 64 128 256 --seeds 0 1 --n-train 8 --epochs 60 --steps-per-epoch 20 --batch-size 8 --width 8 --blocks 1 --gnn-epochs 10 --gnn-n-train 8 --n-test 2 --threads 1
	$(BIN)/python tools/bench_import.py --size-gb 2 --chunk-mb 256 32
	$(BIN)/pip install --quiet -e ".[soak]"  # LitServe, the soak's peer
	$(BIN)/python tools/soak_serve.py --duration 60

MODELS_DIR ?= models

serve: $(STAMP)  ## Serve every checkpoint under MODELS_DIR (default models/) over HTTP on 127.0.0.1:8000
	$(BIN)/surrogates-serve models_dir=$(MODELS_DIR)

clean:  ## Remove outputs, caches and the virtual environment (keeps datasets/)
	rm -rf outputs multirun lightning_logs .pytest_cache $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
