# The one entry point of the workshop. `make` alone lists the targets.
#
# Every target that needs set-up does it first: system packages (tools/setup-system.sh), the
# Python venv (tools/setup-venv.sh) and the C build. All of it is idempotent: a second run
# only checks, in seconds.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The workshop's Python code (toolkit, graders, reference packages) lives in py/.
export PYTHONPATH := $(CURDIR)/py
export PYTHONDONTWRITEBYTECODE := 1

# OFFLINE_CACHE=DIR: a folder filled by tools/offline-cache.sh on a connected machine. Set-up then
# installs from it with no network: apt (setup-system.sh) and pip (setup-venv.sh) read the variable,
# and npm (the deck's `npm ci`, for make slides and make handout) its two settings below.
ifneq ($(OFFLINE_CACHE),)
override OFFLINE_CACHE := $(abspath $(OFFLINE_CACHE))
export OFFLINE_CACHE
export npm_config_cache := $(OFFLINE_CACHE)/npm
export npm_config_offline := true
endif

.DEFAULT_GOAL := help

## help: list the targets (this text)
help:
	@echo "What's wrong with async FS in Python? — the workshop. Targets:"
	@echo
	@sed -n 's/^## //p' $(MAKEFILE_LIST) | awk -F': ' '{ printf "  make %-14s %s\n", $$1, $$2 }'
	@echo
	@echo "For maintainers of the workshop:"
	@sed -n 's/^#m //p' $(MAKEFILE_LIST) | awk -F': ' '{ printf "  make %-14s %s\n", $$1, $$2 }'
	@echo
	@echo "Start with: make doctor, then make lab1 (read labs/01-nonblocking/README.md first)."

## setup: install system packages, create .venv, build the C code (done by every target)
setup: system $(VENV)/.installed build build/kernaio.stamp

system:
	@tools/setup-system.sh

$(VENV)/.installed: requirements.txt tools/setup-venv.sh | system
	@PYTHON=$(PYTHON) tools/setup-venv.sh

# kernaio (the capstone): py/kernaio IS the package (py/ is on the venv's path), so its C extension
# is built in place next to its sources: exactly one importable `kernaio`. Rebuilt when its C changes.
KERNAIO_SOURCES := $(wildcard py/kernaio/src/*.c py/kernaio/src/*.h) py/kernaio/setup.py
# Also rebuilt when the extension for this venv's Python is missing: in a container the checkout is the
# host's (whose py/kernaio has none, or one for another Python) while build/ is the container's own.
KERNAIO_SO := py/kernaio/_kernaio$(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))' 2>/dev/null)
build/kernaio.stamp: $(KERNAIO_SOURCES) $(if $(wildcard $(KERNAIO_SO)),,FORCE) | $(VENV)/.installed
	@echo "setup: building kernaio's C extension (py/kernaio/_kernaio*.so)"
	@mkdir -p build && cd py/kernaio && ../../$(PY) setup.py --quiet build_ext --inplace \
		--build-temp ../../build/kernaio-ext --build-lib ../../build/kernaio-ext/lib
	@touch $@

## build: compile the reference C code into build/bin
build: system
	@$(MAKE) -s -C c O=$(CURDIR)/build/bin

## doctor: check what this machine can do (io_submit, O_DIRECT, io_uring, strace, perf) and what to do
doctor: system
	@$(PYTHON) -m xray.doctor

## labN: grade lab N (e.g. make lab1; T=drip runs the tests whose name contains drip; REF=1 grades the reference)
lab%: setup
	@$(PY) -m grading.run lab $* $(if $(REF),--ref) $(if $(T),-k '$(T)')

## watch: grade a lab again at each save of its files (make watch LAB=N; WATCH=poll on shared folders)
watch: setup
	@$(PY) -m grading.watch $(or $(LAB),$(error say which lab: make watch LAB=1)) $(if $(filter poll,$(WATCH)),--poll)

## status: a progress table of every lab
status: $(VENV)/.installed
	@$(PY) -m grading.run status

## hint: the next hint of a lab (make hint LAB=N)
hint: $(VENV)/.installed
	@$(PY) -m grading.run hint $(or $(LAB),$(error say which lab: make hint LAB=1))

## reset: start one lab over (make reset LAB=N); your files are saved in build/backup/ first
reset: $(VENV)/.installed
	@$(PY) -m grading.starters reset $(or $(LAB),$(error say which lab: make reset LAB=1))

#m starters: rewrite the starters from the reference; refuses changed files (FORCE=1 saves, then overwrites)
starters: $(VENV)/.installed
	@$(PY) -m grading.starters write $(if $(FORCE),--force)

## notebooks: start Jupyter on localhost with the walkthroughs (notebooks/)
# The container's image sets NOTEBOOK_IP=0.0.0.0: its own localhost is out of the host's reach, and
# only the port its run publishes (to the host's 127.0.0.1) leads in.
NOTEBOOK_IP ?= 127.0.0.1
notebooks: setup
	@$(VENV)/bin/jupyter lab --ip=$(NOTEBOOK_IP) --port=8888 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

## reveal: every "async" file API of this machine, its threads and its loop's waits for the device (REPEAT=3 runs it thrice, verdicts side by side)
reveal: setup
	@$(PY) -m reveal $(if $(REPEAT),--repeat $(REPEAT))

## bench: kernaio vs peers and fio (4 KiB random reads, QD 1-128), then echo servers (C reactor, uvloop...), ~6 min
bench: setup
	@$(PY) -m bench

## slides: the talk as offline HTML decks, the workshop's and the talk alone, and PDFs with Chromium (build/slides/)
slides: $(VENV)/.installed
	@tools/setup-system.sh slides
	@$(PY) -m deck build

## handout: the instructors' one-page handout, build/handout/handout.pdf with Chromium (handout.html always)
handout: $(VENV)/.installed
	@tools/setup-system.sh slides
	@$(PY) -m kit handout

## test: prove every grader test both ways and against known wrong solutions; every README command; toolkit and kernaio tests (also under ASan), notebooks, the deck
test: setup
	@$(PY) -m grading.prove $(if $(LAB),--lab $(LAB)) $(if $(T),-k '$(T)')

#m mutants: prove each lab's known wrong solutions fail their graders (LAB=N for one lab; make test does too)
mutants: setup
	@$(PY) -m grading.mutants $(if $(LAB),--lab $(LAB))

## asan: C code with AddressSanitizer (build/asan), then kernaio tests (1M reads) on an ASan build; ubsan, tsan too
SANITIZER_asan := address
SANITIZER_ubsan := undefined
SANITIZER_tsan := thread
asan ubsan tsan: system
	@$(MAKE) -s -C c O=$(CURDIR)/build/$@ SAN=$(SANITIZER_$@)
	@$(if $(filter asan,$@),tools/kernaio-asan.sh)

asan: $(VENV)/.installed

#m test-container: build the workshop's image with podman, then doctor, lab1, lab7, reveal in containers (default profile, workshop flags)
test-container:
	@tools/setup-system.sh container
	@$(PYTHON) tools/container/test.py

FORCE:

## clean: remove build/ (keeps .venv; `make distclean` removes it too)
clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV)

.PHONY: help setup system build doctor status watch hint reset starters notebooks reveal bench slides handout test mutants asan ubsan tsan test-container FORCE clean distclean
