# Set up (tools/install.sh: Debian packages + tools/venv) and run the test suite.
PYTHON := tools/venv/bin/python

.PHONY: install test demo
install:
	tools/install.sh

test: install
	$(PYTHON) -m pytest -q --doctest-modules diffasr test

# The flagship recipe end to end on its embedded corpus.
demo: install
	cd egs/librimix_target/asr1 && ./run.sh
