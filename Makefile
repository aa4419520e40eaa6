# Set up (tools/install.sh: Debian packages + tools/venv) and run the test suite.
PYTHON := tools/venv/bin/python

.PHONY: install test test-full demo
install:
	tools/install.sh

# Unit tests and one tiny end-to-end recipe run (pytest.ini: the tiers).
test: install
	$(PYTHON) -m pytest -q --durations=15 --doctest-modules diffasr test -m "not integration"

# The integration tier: recipe stages with kill-and-resume, Slurm, DDP, server load.
test-full: install
	$(PYTHON) -m pytest -q --durations=15 test -m integration

# The flagship recipe end to end on its embedded corpus.
demo: install
	cd egs/librimix_target/asr1 && ./run.sh
