# Two commands set everything up on a fresh machine:
#   make serve   create .venv, install, (re)build index/ from corpus/ if stale, serve :8000
#   make test    create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install index serve test test-load audit lock bench clean

install: $(VENV)/.installed

# requirements.lock pins every package to the versions tested here (`make lock`
# writes it from the current .venv); pyproject.toml keeps the ranges.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

lock:
	( echo "# Versions kbqa is tested with (make lock). Used as pip constraints by make install."; \
	  $(BIN)/python -m pip freeze --exclude-editable | sort -f ) > requirements.lock

index: install
	$(BIN)/kbqa index --if-stale

serve: index
	$(BIN)/kbqa serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

# 16 clients for 2 minutes with a re-index, then a worker killed (a few minutes).
test-load: install
	$(BIN)/python -m pytest -q -s -m load

# Known vulnerabilities in the installed dependencies (the registry's advisory data).
audit: install
	@mkdir -p tests/artifacts
	$(BIN)/pip-audit --local --skip-editable --progress-spinner off 2>&1 | tee tests/artifacts/pip-audit.txt | grep -v "could not be audited" || true
	@! grep -Eq "^Found [0-9]+ known vulnerabilit" tests/artifacts/pip-audit.txt

clean:
	rm -rf index/ .pytest_cache
