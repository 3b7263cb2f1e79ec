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

.PHONY: venv demo test lint bench install uninstall clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "make: $(PYTHON) cannot create virtual environments; install python3-venv (apt-get install python3-venv)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

demo: venv
	./scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check systraq tests bench

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

# Installs the program into its own virtual environment under LIBDIR, a launcher in BINDIR,
# man pages, the example configuration (never over an existing one), the cron file and the
# apt hook that regenerates filetraq.conf.
install:
	$(PYTHON) -m venv $(DESTDIR)$(LIBDIR)
	$(DESTDIR)$(LIBDIR)/bin/pip install --quiet .
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(SYSCONFDIR)/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d
	printf '#!/bin/sh\nexec %s/bin/systraq "$$@"\n' '$(LIBDIR)' > $(DESTDIR)$(BINDIR)/systraq
	chmod 755 $(DESTDIR)$(BINDIR)/systraq
	install -m 644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	for f in etc/*; do \
	  [ -d "$$f" ] && continue; \
	  t=$(DESTDIR)$(SYSCONFDIR)/systraq/$$(basename $$f); \
	  [ -e "$$t" ] || install -m 644 "$$f" "$$t"; \
	done
	install -m 644 cron.d/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq
	install -d $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d
	install -m 644 etc/apt/99systraq $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq

uninstall:
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR)/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq
	rm -f $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(wildcard man/*.8)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/*.5)))

clean:
	rm -rf demo build *.egg-info .pytest_cache .ruff_cache .hypothesis
