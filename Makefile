# Fay: the two set-up commands are `make run` (install and start the server) and `make test` (install and test).
# Everything a fresh machine needs is installed here; re-running skips what is already done.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
LINT_PATHS := fay_core plugins tests bench examples
TYPED_PATHS := fay_core plugins examples/fay-plugin-weather/fay_plugin_weather
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install install-test system-deps web-deps smart-turn bench lint clean

run: install
	$(BIN)/fay run --host $(HOST) --port $(PORT)

# two workers (the CI machine's cores), each running whole test files so module fixtures are built once; then the
# files that time against a real clock (browser lip-sync, real-time audio, the soak) alone (tests/conftest.py);
# the slowest tests are listed, to keep the run short
TEST_WORKERS ?= 2
test: install-test lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" --durations=20 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m serial --durations=10 $(PYTEST_ARGS)

# ruff and mypy (unused type: ignores are errors); `make test` runs it first, so CI does too
lint: install-test
	$(BIN)/python -m ruff check $(LINT_PATHS)
	$(BIN)/python -m mypy --warn-unused-ignores $(TYPED_PATHS)

install: $(VENV)/.installed web-deps smart-turn

install-test: $(VENV)/.installed-test system-deps web-deps smart-turn

# A current pip resolves this dependency set in seconds; the one a new venv gets backtracks for minutes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e ".[offline]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e ".[offline,test]" -e examples/fay-plugin-weather
	touch $@

# Debian packages the tests use: espeak-ng (offline TTS, last resort), gcin-voice (the recorded Mandarin syllables
# of plugins/fay_gcin, the offline zh default), Chromium (browser tests), redis-server (the cluster test starts its
# own), PostgreSQL (the shared audit store's tests start a throw-away cluster from its binaries).
system-deps:
	@missing=""; for p in espeak-ng chromium redis-server; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-wqy-microhei"; \
	test -d /usr/share/gcin-voice/ogg || missing="$$missing gcin-voice"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Smart Turn v3 (the default turn gate) for offline use: only the ONNX file and its BSD-2 licence, taken from the
# pipecat-ai wheel (pip download --no-deps: none of pipecat's dependencies), into $(VENV)/share/fay/smart_turn/
smart-turn: $(VENV)/share/fay/smart_turn/LICENSE

$(VENV)/share/fay/smart_turn/LICENSE: $(VENV)/.installed plugins/fay_smart_turn/fetch.py
	$(BIN)/python -m fay_smart_turn.fetch --dest $(VENV)/share/fay/smart_turn
	touch $@

web-deps: web/node_modules/.installed

web/node_modules/.installed: web/package.json
	cd web && npm install --no-audit --no-fund --loglevel=error
	touch $@

bench: install-test
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) web/node_modules .pytest_cache
