# The two commands a fresh machine needs: `make demo` and `make test`.
# Set-up is idempotent: a stamp file makes a re-run return at once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pip held to the lock file: exact versions, whatever the index holds newer.
PIP_LOCKED := $(PY) -m pip install -q -c requirements.lock
STAMP := $(VENV)/.setup-done
APT_PACKAGES := libusb-1.0-0 libgomp1
# The editor's real-browser test drives Debian's chromium (never a downloaded browser).
TEST_APT_PACKAGES := chromium
# The bench's peer (open3d's Filament renderer) needs a Vulkan driver: Mesa's lavapipe without a GPU.
BENCH_APT_PACKAGES := libvulkan1 mesa-vulkan-drivers libegl1 libgl1
DEMO_OUT ?= out/demo

.PHONY: setup lock test demo demo-data bench gpu-check eval-model ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Every install is held to requirements.lock (`make lock` refreshes it): pip and the build backend
	# first, then torch on its own so nothing later pulls a CUDA build, then the package without build
	# isolation so its build backend is the locked one too.
	$(PIP_LOCKED) pip setuptools wheel
	$(PIP_LOCKED) torch
	$(PIP_LOCKED) --no-build-isolation -e ".[dev]"
	$(PIP_LOCKED) --no-deps nuscenes-devkit
	$(PY) -c "import drivesim, open3d, nuscenes.nuscenes, torch; print('setup ok: torch', torch.__version__)"
	touch $(STAMP)

# Re-resolve every dependency (pyproject.toml's ranges, all extras but gpu) in a scratch venv and write
# the exact versions to requirements.lock. Commit the result after `make test` passes with it.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(LOCK_VENV)/bin/pip install -q "torch==2.13.0"
	$(LOCK_VENV)/bin/pip install -q --no-build-isolation -e ".[dev,bench]"
	$(LOCK_VENV)/bin/pip install -q --no-deps nuscenes-devkit==1.2.0
	{ echo "# Exact versions for make setup, make bench and CI (Linux x86_64, CPython 3.11). Refresh: make lock."; \
	  echo "# torch is the CPU build; its +cpu label is dropped so the pin matches wherever pip finds it."; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude-editable | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/'; \
	} > requirements.lock
	rm -rf $(LOCK_VENV)

test: setup
	@missing=""; for p in $(TEST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "could not install$$missing: the browser test will say it is skipped"; fi
	$(VENV)/bin/ruff check drivesim tests benchmarks ui
	$(PY) -m pytest -q tests

# The scenario editor on http://127.0.0.1:8501 (PORT=... to change it).
PORT ?= 8501
ui: setup
	$(VENV)/bin/drivesim ui --port $(PORT)

# The main job: a shipped scenario rendered by the shipped weights (weights/drivesim-small, MODEL_CARD.md)
# into six camera MP4s, grid.mp4 and contact_sheet.png. town_left_turn starts from a real frame of a
# held-out synthetic log (scenarios/README.md). DEMO_SCENARIO=... to pick another scenario. The sampling
# settings (steps, temperature, strength, ...) are generate's defaults, RolloutConfig's in drivesim/simulate.py,
# the best measured (MODEL_CARD.md); DEMO_ARGS="--steps 4 --temperature 0.5" tries others.
# Then a hand-drawn scenario with no start frame at all (Text2World): the street drawn from its dense scene
# maps alone (drivesim/scene_maps.py). DEMO_T2W_SCENARIO=... to pick another.
DEMO_SCENARIO ?= scenarios/town_left_turn.yaml
DEMO_ROLLOUT ?= out/demo-rollout
DEMO_T2W_SCENARIO ?= scenarios/cut_in.yaml
DEMO_T2W_ROLLOUT ?= out/demo-text2world
DEMO_ARGS ?=
demo: setup
	$(VENV)/bin/drivesim generate --scenario $(DEMO_SCENARIO) --out $(DEMO_ROLLOUT) --seed 0 --device cpu --overwrite \
	  $(DEMO_ARGS)
	$(VENV)/bin/drivesim generate --scenario $(DEMO_T2W_SCENARIO) --out $(DEMO_T2W_ROLLOUT) --seed 0 --device cpu \
	  --overwrite $(DEMO_ARGS)
	@echo "demo: open $(DEMO_ROLLOUT)/grid.mp4 and $(DEMO_ROLLOUT)/contact_sheet.png (from a start frame),"
	@echo "      $(DEMO_T2W_ROLLOUT)/grid.mp4 and $(DEMO_T2W_ROLLOUT)/contact_sheet.png (the scenario alone)"

# The data path on its own: synthetic driving logs, then the curated clip store, verified.
demo-data: setup
	$(VENV)/bin/drivesim synth --scenes 2 --seconds 4 --size 448x256 --out $(DEMO_OUT) --overwrite \
	  --contact-sheet $(DEMO_OUT)-contact-sheet.png
	rm -rf $(DEMO_OUT)-store
	$(VENV)/bin/drivesim ingest --dataroot $(DEMO_OUT) --out $(DEMO_OUT)-store --frames 17 --stride 8
	$(VENV)/bin/drivesim store verify $(DEMO_OUT)-store --quiet
	$(VENV)/bin/drivesim store sheet $(DEMO_OUT)-store --out $(DEMO_OUT)-clip-sheet.png

bench: setup
	@missing=""; for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "could not install$$missing: the peer's row will say why it is unavailable"; fi
	$(PY) benchmarks/bench_synth.py
	$(PY) benchmarks/bench_store.py --record
	$(PIP_LOCKED) --no-build-isolation -e ".[bench]"
	test -d $(DEMO_OUT)-store || $(MAKE) demo-data
	$(PY) benchmarks/bench_tokenizer.py --store $(DEMO_OUT)-store --record
	$(PY) benchmarks/bench_wfm.py --record

# On a machine with a CUDA GPU, in at most 8 minutes: the base preset's bf16 training step and MFU, flash-attn
# (the optional gpu extra, used when installed) against SDPA and math attention, an FSDP2 step, and six-view
# 17-frame rollouts at 448x256 and 848x480, appended to benchmarks/RESULTS.md. Without CUDA it says so and exits 0.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py --record

# The shipped weights on held-out synthetic scenarios beside two baselines (MODEL_CARD.md), sampled with
# RolloutConfig's defaults as the demo is; DEMO_ARGS as for demo.
eval-model: setup
	$(PY) benchmarks/eval_model.py --record $(DEMO_ARGS)

clean:
	rm -rf out .pytest_cache
