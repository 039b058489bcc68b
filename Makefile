# Set-up and the two entry points named in README.md. Everything installs into ./.venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PACK := $(VENV)/bin/mindie-pack
# MindFormers is installed without its (NPU-only) dependencies: we only need it to build networks on CPU.
MINDFORMERS ?= mindformers==1.8.0
# What `import mindformers` needs on CPU (its full dependency list pins NPU-era versions we do not want).
MINDFORMERS_IMPORT_DEPS := 'datasets<4' 'pyarrow<20' 'pandas<3' rouge_chinese nltk mindpet tensorboardX Deprecated regex tqdm setproctitle tiktoken sentencepiece jieba pillow

.PHONY: example test setup setup-dev clean

# torch for verify --reference's oracle: the CPU build (pinned, so that pip takes it rather than a CUDA build)
TORCH ?= torch==2.13.0

$(VENV)/.runtime-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[verify]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.runtime-installed
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(MINDFORMERS)
	$(PY) -m pip install -q $(MINDFORMERS_IMPORT_DEPS)
	touch $@

setup: $(VENV)/.runtime-installed
setup-dev: $(VENV)/.dev-installed /usr/bin/chromium /usr/sbin/sshd

# Debian packages the tests use, each installed only when missing: chromium for the chat page's browser tests
# (Playwright drives it: no browser download) and OpenSSH's sshd for the multi-node tests (real SSH servers on
# loopback addresses).
APT_INSTALL = $(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1)'
/usr/bin/chromium:
	$(call APT_INSTALL,chromium)
/usr/sbin/sshd:
	$(call APT_INSTALL,openssh-server)

# The main job on the bundled example: make a tiny model, build it for 2 NPUs, verify the result.
example: setup
	bash examples/run-example.sh $(PACK) $(PY)

# The test suite (slow end-to-end tests included).
test: setup-dev
	$(PY) -m pytest

clean:
	rm -rf examples/work
