# `make demo` and `make test` each set up .venv on a fresh machine, then do their job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vdmkit-installed
TORCH_VERSION := 2.13.0
DEMO_PROMPT := a fast blue square moving up

.PHONY: setup demo demo-train test browser clean

setup: $(STAMP)

# torch first, pinned: these machines hold a local CPU wheel of 2.13.0; any other version would pull
# GBs of CUDA packages. The project then declares a range that 2.13.0 satisfies.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	# the LPIPS parity reference: it declares torchvision (no CPU build here), which it only needs for the
	# model definitions tests/test_metrics_lpips.py stubs; without it those two tests skip
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	touch $(STAMP)

# the bundled default model (src/vdmkit/weights/default): `vdmkit sample` uses it when no --model is given, with the
# few-step sampler it ships with
demo: $(STAMP)
	$(VENV)/bin/vdmkit sample --prompt "$(DEMO_PROMPT)" --seed 0 --out outputs/demo.mp4 --strip

# train the default model's recipe yourself (about 75 minutes on 2 CPU cores; resumable), then sample it
demo-train: $(STAMP)
	@if [ -d runs/default/checkpoints ]; then \
		$(VENV)/bin/vdmkit train configs/default.yaml --resume; \
	else \
		$(VENV)/bin/vdmkit train configs/default.yaml; \
	fi
	$(VENV)/bin/vdmkit sample --model runs/default --prompt "$(DEMO_PROMPT)" --out outputs/demo-train.mp4 --strip

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: $(STAMP)
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Debian's headless Chromium and its WebDriver for tests/test_app_browser.py (needs root and apt; without them the
# browser tests skip, saying so). Measured on this 2-core machine: see the README's "Web app" section.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	else \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			chromium chromium-driver; \
	fi

clean:
	rm -rf runs/demo runs/default runs/tiny outputs
