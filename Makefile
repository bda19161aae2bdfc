# replikv: `make run` starts a local 3-node cluster, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= ./data

.PHONY: run test venv clean bench fuzz soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/replikv up --mode leader-follower --nodes 3 --port 7001 --data-dir $(DATA)

test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

# long fuzz runs (atheris): FUZZ_SECONDS per target, crashes kept in tests/fuzz/crashes/
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(PY) tests/fuzz/long.py $(FUZZ_SECONDS)

# longer runs than make test: fresh simulator seeds of every simulated mode, short and long
SOAK_SEEDS ?= 20000
soak: $(STAMP)
	$(PY) -m replikv.sim --mode raft --fresh --seeds $(SOAK_SEEDS)
	$(PY) -m replikv.sim --mode raft --fresh --seeds $$(( $(SOAK_SEEDS) / 10 )) --long
	$(PY) -m replikv.sim --mode leader-follower --fresh --seeds $(SOAK_SEEDS)
	$(PY) -m replikv.sim --mode leader-follower --fresh --seeds $$(( $(SOAK_SEEDS) / 10 )) --long
	$(PY) -m replikv.sim --mode multi-leader --fresh --seeds $(SOAK_SEEDS)
	$(PY) -m replikv.sim --mode multi-leader --fresh --seeds $$(( $(SOAK_SEEDS) / 100 )) --long
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $(SOAK_SEEDS)
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $$(( $(SOAK_SEEDS) / 10 )) --nodes 5
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $$(( $(SOAK_SEEDS) / 10 )) --paxos
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $$(( $(SOAK_SEEDS) / 10 )) --nodes 4 --membership
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $$(( $(SOAK_SEEDS) / 20 )) --nodes 5 --membership
	$(PY) -m replikv.sim --mode leaderless --fresh --seeds $$(( $(SOAK_SEEDS) / 200 )) --long
	$(PY) -m replikv.sim --shards 3000 --nodes 30
	$(PY) -m replikv.sim --moves --fresh --seeds $$(( $(SOAK_SEEDS) / 10 ))
	$(PY) -m replikv.sim --moves --fresh --seeds $$(( $(SOAK_SEEDS) / 20 )) --nodes 7 --shards 6
	$(PY) -m replikv.sim --rebalance --fresh --seeds $$(( $(SOAK_SEEDS) / 10 ))
	$(PY) -m replikv.sim --rebalance --fresh --seeds $$(( $(SOAK_SEEDS) / 20 )) --nodes 7 --shards 12

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
