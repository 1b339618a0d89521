# The tutorial's two set-up commands:
#   make run STEP=03 SERVER=daphne   start one step's server on the default track
#   make test                        run the whole test suite on both tracks
#   make test STEP=06 TRACK=current  only step 06's tests, only on the current track
# Both create what they need first and reuse it on the next run.

# Python 3.11 where it is installed under that name, else whatever python3 is.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The tracks, default first, as tools/tracks.py (the one place that names them) lists them.
TRACKS := $(shell $(PYTHON) -m tools.tracks)
DEFAULT_TRACK := $(firstword $(TRACKS))
# make test runs every step on every track unless STEP or TRACK is given, and make notebooks
# leaves the port to Jupyter unless PORT is: read here, before the defaults below set them.
TEST_STEP := $(if $(filter undefined,$(origin STEP)),,$(STEP))
TEST_TRACKS := $(if $(filter undefined,$(origin TRACK)),$(TRACKS),$(TRACK))
GIVEN_PORT := $(if $(filter undefined,$(origin PORT)),,$(PORT))
NOTEBOOK_PORT ?= $(GIVEN_PORT)
ifneq ($(filter-out $(TRACKS),$(TEST_TRACKS)),)
$(error TRACK=$(TRACK) is not a track; the tracks are: $(TRACKS))
endif
STEP ?= 01
SERVER ?= runserver
PORT ?= 8000
TRACK ?= $(DEFAULT_TRACK)

VENV = .venv/$(TRACK)

.PHONY: run test env notebooks notebook-outputs lock benchmark

# Two environments per track, each rebuilt whenever its lock file changes:
# .venv/run-<track>, what a step needs to run (Django, daphne, uvicorn, Channels), for make run;
# .venv/<track>, that plus the tools of the tests, notebooks and benchmark (pytest, Playwright,
# Jupyter, ruff, ...), for make test, make notebooks and make benchmark.
.venv/run-%/installed: requirements/%.txt
	@PYTHON=$(PYTHON) tools/install_environment.sh .venv/run-$* $< "what a step needs to run on the $* track"
	@touch $@

.venv/%/installed: requirements/%-tests.txt
	@PYTHON=$(PYTHON) tools/install_environment.sh --with-pip .venv/$* $< "the $* track's tests, notebooks and benchmark"
	@touch $@

env: $(VENV)/installed

run: .venv/run-$(TRACK)/installed
	@.venv/run-$(TRACK)/bin/python -m tools.run_step --step $(STEP) --server $(SERVER) --port $(PORT) $(if $(STEP_COPY),--directory $(STEP_COPY))

test: $(foreach track,$(TEST_TRACKS),.venv/$(track)/installed)
	.venv/$(firstword $(TEST_TRACKS))/bin/python -m tools.run_tests $(if $(TEST_STEP),--step $(TEST_STEP)) $(TEST_TRACKS) $(PYTEST_ARGS)

# Jupyter refuses to start as root unless told to; CI and many containers run as root.
# Without PORT (or NOTEBOOK_PORT) Jupyter takes 8888, or the next free port after it.
notebooks: $(VENV)/installed
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) $(if $(NOTEBOOK_PORT),--port=$(NOTEBOOK_PORT)) notebooks/

# The committed notebook outputs come from the default track; this regenerates them.
notebook-outputs: .venv/$(DEFAULT_TRACK)/installed
	.venv/$(DEFAULT_TRACK)/bin/python tools/execute_notebooks.py

# Every server and step side by side, on both tracks: writes benchmarks/results/ and the
# results block of benchmarks/README.md, loopback only. The first lines of
# benchmarks/results/results.md say how long the run took.
benchmark: $(foreach track,$(TRACKS),.venv/$(track)/installed)
	$(VENV)/bin/python -m benchmarks.run_benchmark --tracks $(TRACKS) $(BENCHMARK_ARGS)

lock:
	tools/lock_requirements.sh
