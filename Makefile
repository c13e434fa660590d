# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast ui head head-stop bench quality browser postgres clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -e '.[dev]' || { df -h . "$${TMPDIR:-/tmp}"; \
		echo "set-up failed: the venv needs about 8 GB (torch's CUDA build); free space is shown above"; exit 1; }
	touch $(STAMP)

# The main job on the embedded default: local Ray, bundled sample photos, tiny Refusion, local MLflow.
demo: $(STAMP)
	$(PY) pipelines/train.py

# Debian's Chromium for the MLflow UI browser test (skipped with a reason when it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || echo "chromium not installed: the UI browser test will be skipped"

# Debian's PostgreSQL for the tracking-store restart test (a throwaway cluster on a free port; skipped with a reason
# when it cannot be installed).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } || echo "postgresql not installed: the tracking-store test will be skipped"

# The unit tests start no Ray and run one torch thread each: two pytest-xdist workers use both cores (140 s -> 83 s).
# The quality tests are in-process trainings: two at once, one torch thread each (367 s -> 312 s).
# The other slow tests start Ray clusters and multi-process jobs, which one at a time left the cores idle 30% of the
# time (process and Ray start-up): two at once, a test file at a time (tests/conftest.py::SAME_WORKER): 670 s -> 447 s.
QUALITY := tests/bench/test_quality.py
test: $(STAMP) browser postgres
	$(PY) -m pytest -q -m "not slow" -n 2 --timeout=300 --durations=10
	RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2 $(PY) -m pytest -q -m slow -n 2 --timeout=900 --durations=10 $(QUALITY)
	RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2 $(PY) -m pytest -q -m slow -n 2 --dist loadfile --timeout=900 --durations=40 --ignore=$(QUALITY)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2 --timeout=300

ui: $(STAMP)
	$(PY) tuning/ui.py

# A token-auth Ray head on 127.0.0.1, started from the project's venv (so jobs find ray, torch, ...), whose
# submitted jobs keep their runs in this checkout's runs/ (RESTORATION_STORAGE), where `make ui` and --resume look.
head: $(STAMP)
	RAY_AUTH_MODE=token RESTORATION_STORAGE=$(CURDIR)/runs PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
		$(VENV)/bin/ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --disable-usage-stats

head-stop:
	$(VENV)/bin/ray stop

bench: $(STAMP)
	for b in degradations refusion ingest methods osediff channel_norm; do $(PY) -m bench.$$b || exit 1; done

# Every method trained on the bundled photos and scored on the held-out ones (about 40 minutes on 2 cores).
quality: $(STAMP)
	$(PY) -m bench.quality --method all

clean:
	rm -rf runs .pytest_cache
