# systraq: make venv | demo | test | lint | bench | install | clean
PYTHON ?= python3
VENV ?= .venv
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
LIBDIR = $(PREFIX)/lib/systraq
PYTEST_ARGS ?=
# Benchmarks `make bench` runs: bench/run.py (snapshots; BENCH_ARGS) and bench/packages.py
# (package verification; PACKAGES_BENCH_ARGS). `make bench BENCH=packages` runs one.
BENCH ?= run packages

.PHONY: venv demo test lint bench install uninstall clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "make: $(PYTHON) cannot create virtual environments; install python3-venv (apt-get install python3-venv)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	@echo "installing systraq and its test tools into $(VENV) (log: $(VENV)/pip.log)"
	@{ $(VENV)/bin/pip install --upgrade pip && $(VENV)/bin/pip install -e '.[test]'; } \
	  > $(VENV)/pip.log 2>&1 || { tail -n 30 $(VENV)/pip.log; exit 1; }
	touch $@

demo: venv
	./scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check systraq tests bench

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv
	@for b in $(BENCH); do \
	  case $$b in \
	    run) $(VENV)/bin/python bench/run.py $(BENCH_ARGS) || exit $$? ;; \
	    packages) $(VENV)/bin/python bench/packages.py $(PACKAGES_BENCH_ARGS) || exit $$? ;; \
	    *) echo "make: unknown benchmark $$b (run, packages)" >&2; exit 2 ;; \
	  esac; \
	done

# Installs the program and its dependencies under LIBDIR (built with this machine's
# python3, which the launcher in BINDIR then runs in isolated mode), the man pages, the
# example configuration (never over an existing file), the cron file and the apt hook.
# Nothing inside LIBDIR names DESTDIR, so staged installs (DESTDIR=...) work.
install: venv
	rm -rf $(DESTDIR)$(LIBDIR)
	$(VENV)/bin/pip install --quiet --no-compile --target $(DESTDIR)$(LIBDIR) .
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(SYSCONFDIR)/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d
	python=$$($(VENV)/bin/python -c 'import sys; print(sys._base_executable)'); \
	printf '#!/bin/sh\nexec %s -I -c %s "$$@"\n' "$$python" \
	  "'import sys; sys.argv[0] = \"systraq\"; sys.path.insert(0, \"$(LIBDIR)\"); from systraq.cli import main; main()'" \
	  > $(DESTDIR)$(BINDIR)/systraq
	chmod 755 $(DESTDIR)$(BINDIR)/systraq
	install -m 644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	for f in etc/*; do \
	  [ -f "$$f" ] || continue; \
	  t=$(DESTDIR)$(SYSCONFDIR)/systraq/$$(basename $$f); \
	  [ -e "$$t" ] || install -m 644 "$$f" "$$t"; \
	done
	install -m 644 cron.d/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq
	install -d $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d
	install -m 644 etc/apt/99systraq $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq

uninstall:
	rm -rf $(DESTDIR)$(LIBDIR)
	rm -f $(DESTDIR)$(BINDIR)/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq
	rm -f $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(wildcard man/*.8)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/*.5)))

clean:
	rm -rf demo build *.egg-info .pytest_cache .ruff_cache .hypothesis
