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

$(VENV)/.runtime-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $@

# OpenSSH's sshd: the multi-node deploy tests run real SSH servers on loopback addresses.
SSHD ?= /usr/sbin/sshd
$(SSHD):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; \
	else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; fi

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.runtime-installed $(SSHD)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(MINDFORMERS)
	$(PY) -m pip install -q $(MINDFORMERS_IMPORT_DEPS)
	touch $@

setup: $(VENV)/.runtime-installed
setup-dev: $(VENV)/.dev-installed

# The main job on the bundled example: make a tiny model, build it for 2 NPUs, verify the result.
example: setup
	bash examples/run-example.sh $(PACK) $(PY)

# The test suite (slow end-to-end tests included).
test: setup-dev
	$(PY) -m pytest

clean:
	rm -rf examples/work
