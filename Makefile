# systraq: make venv | demo | test | lint | bench | install | uninstall | deb | clean
PYTHON ?= python3
VENV ?= .venv
# The interpreter the installed program runs with: the system's, whatever python3 means
# to whoever builds it (a pyenv under /root cannot be read by the systraq account).
SYSTEM_PYTHON ?= /usr/bin/python3
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
LIBDIR = $(PREFIX)/lib/systraq
DATADIR = $(PREFIX)/share/systraq
UNITDIR ?= $(PREFIX)/lib/systemd/system
PYTEST_ARGS ?=
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' systraq/__init__.py)
# Epoch 1: the successor of Debian's systraq, whose versions are dates (20201231-1).
DEB_VERSION = 1:$(VERSION)
DEB = build/systraq_$(VERSION)_all.deb
UNITS = $(notdir $(wildcard systemd/*.service systemd/*.timer))
EXAMPLES = snapshot_pub.list snapshot_pub.homelist snapshot_root.list snapshot_root.homelist \
  systraq.conf
RULES = $(notdir $(wildcard etc/ignore.d/*))
# Benchmarks `make bench` runs: bench/run.py (snapshots; BENCH_ARGS) and bench/packages.py
# (package verification; PACKAGES_BENCH_ARGS), bench/contentdiff.py (the content diff). `make bench BENCH=packages` runs one.
BENCH ?= run contentdiff packages

.PHONY: venv demo test lint bench install install-files uninstall deb clean

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
	    contentdiff) $(VENV)/bin/python bench/contentdiff.py || exit $$? ;; \
	    *) echo "make: unknown benchmark $$b (run, contentdiff, packages)" >&2; exit 2 ;; \
	  esac; \
	done

# Installs the program under LIBDIR, run by SYSTEM_PYTHON with Debian's python3-click,
# python3-xxhash and python3-rich (no network, no test tools), a launcher in BINDIR, the
# man pages, the shipped examples in DATADIR (systraq init copies them), systraq.conf
# (never over an existing one), the cron file, the apt hook and the systemd units. It
# never overwrites a file another package owns (Debian's systraq's cron file: install
# systraq's package instead, `make deb`). Then: systraq init --create-user.
install:
	@if [ -z "$(DESTDIR)" ]; then \
	  $(SYSTEM_PYTHON) -c 'import sys; assert sys.version_info >= (3, 11); import click, xxhash, rich' 2>/dev/null || { \
	    echo "make install: $(SYSTEM_PYTHON) 3.11 or later with click, xxhash and rich is needed: apt-get install python3-click python3-xxhash python3-rich" >&2; exit 2; }; \
	fi
	@sh scripts/ours.sh $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq "$$(head -n 1 cron.d/systraq)" && \
	  sh scripts/ours.sh $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq "$$(head -n 1 etc/apt/99systraq)" || { \
	  echo "make install: not overwriting it; on a host with Debian's systraq, install systraq's package (make deb), which takes its files over" >&2; exit 2; }
	$(MAKE) --no-print-directory install-files
	$(SYSTEM_PYTHON) -m compileall -q -d $(LIBDIR) $(DESTDIR)$(LIBDIR) >/dev/null

install-files:
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DATADIR)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(DATADIR)/examples $(DESTDIR)$(DATADIR)/cron.d $(DESTDIR)$(SYSCONFDIR)/systraq \
	  $(DESTDIR)$(SYSCONFDIR)/cron.d $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d $(DESTDIR)$(UNITDIR)
	for f in $$(find systraq -name '*.py' | sort); do install -D -m 644 $$f $(DESTDIR)$(LIBDIR)/$$f; done
	printf '#!%s -IB\n# systraq, installed from its source tree (%s)\nimport sys\n\nsys.path.insert(0, "%s")\nfrom systraq.cli import main  # noqa: E402\n\nmain()\n' \
	  "$(SYSTEM_PYTHON)" "$(VERSION)" "$(LIBDIR)" > $(DESTDIR)$(BINDIR)/systraq
	chmod 755 $(DESTDIR)$(BINDIR)/systraq
	install -m 644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	for f in $(EXAMPLES); do install -m 644 etc/$$f $(DESTDIR)$(DATADIR)/examples/$$f; done
	install -m 644 cron.d/systraq $(DESTDIR)$(DATADIR)/cron.d/systraq
	[ -e $(DESTDIR)$(SYSCONFDIR)/systraq/systraq.conf ] || \
	  install -m 644 etc/systraq.conf $(DESTDIR)$(SYSCONFDIR)/systraq/systraq.conf
	install -d $(DESTDIR)$(SYSCONFDIR)/systraq/ignore.d
	for f in $(RULES); do \
	  [ -e $(DESTDIR)$(SYSCONFDIR)/systraq/ignore.d/$$f ] || \
	    install -m 644 etc/ignore.d/$$f $(DESTDIR)$(SYSCONFDIR)/systraq/ignore.d/$$f; done
	install -m 644 cron.d/systraq $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq
	install -m 644 etc/apt/99systraq $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq
	for f in $(UNITS); do \
	  sed 's#/usr/bin/systraq#$(BINDIR)/systraq#' systemd/$$f > $(DESTDIR)$(UNITDIR)/$$f; \
	  chmod 644 $(DESTDIR)$(UNITDIR)/$$f; done

# Removes what make install put in place: nothing else, and no file that is not
# systraq's. systraq.conf goes only when unchanged; what systraq init made (the lists, the
# state in /var/lib/systraq, the account) stays: `systraq init` would take it up again.
uninstall:
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DATADIR)
	rm -f $(DESTDIR)$(BINDIR)/systraq
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(wildcard man/*.8)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(wildcard man/*.5)))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	@if sh scripts/ours.sh $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq "$$(head -n 1 cron.d/systraq)"; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/cron.d/systraq; else echo "make uninstall: kept it"; fi
	@if sh scripts/ours.sh $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq "$$(head -n 1 etc/apt/99systraq)"; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/apt/apt.conf.d/99systraq; else echo "make uninstall: kept it"; fi
	@for f in $(RULES); do r=$(DESTDIR)$(SYSCONFDIR)/systraq/ignore.d/$$f; \
	  if cmp -s etc/ignore.d/$$f $$r; then rm -f $$r; fi; done; \
	rmdir $(DESTDIR)$(SYSCONFDIR)/systraq/ignore.d 2>/dev/null || true
	@conf=$(DESTDIR)$(SYSCONFDIR)/systraq/systraq.conf; \
	if cmp -s etc/systraq.conf $$conf; then rm -f $$conf; \
	elif [ -e $$conf ]; then echo "make uninstall: kept $$conf (changed since it was installed)"; fi
	@rmdir $(DESTDIR)$(SYSCONFDIR)/systraq 2>/dev/null || \
	  { [ ! -d $(DESTDIR)$(SYSCONFDIR)/systraq ] || echo "make uninstall: kept $(SYSCONFDIR)/systraq (what systraq init made there); /var/lib/systraq also stays"; }

# A Debian package, built from a staged install with dpkg-deb (no debhelper needed):
# Python dependencies from Debian's own python3-click, python3-xxhash and python3-rich.
deb:
	rm -rf build/deb && mkdir -p build/deb/root/DEBIAN
	$(MAKE) --no-print-directory install-files DESTDIR=build/deb/root PREFIX=/usr \
	  UNITDIR=/lib/systemd/system
	gzip -9n build/deb/root/usr/share/man/man*/*
	install -d build/deb/root/usr/share/doc/systraq
	install -m 644 packaging/deb/copyright build/deb/root/usr/share/doc/systraq/copyright
	sed 's/@VERSION@/$(DEB_VERSION)/' packaging/deb/changelog | gzip -9n \
	  > build/deb/root/usr/share/doc/systraq/changelog.gz
	for f in preinst postinst prerm postrm; do \
	  install -m 755 packaging/deb/$$f build/deb/root/DEBIAN/$$f; done
	install -m 644 packaging/deb/conffiles build/deb/root/DEBIAN/conffiles
	sed -e 's/@VERSION@/$(DEB_VERSION)/' \
	  -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN build/deb/root | cut -f1)/" \
	  packaging/deb/control > build/deb/root/DEBIAN/control
	cd build/deb/root && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort \
	  | xargs md5sum > DEBIAN/md5sums
	find build/deb/root -type d -exec chmod 755 {} +
	dpkg-deb --root-owner-group -Zxz --build build/deb/root $(DEB) >/dev/null
	@echo "built $(DEB)"

clean:
	rm -rf demo build *.egg-info .pytest_cache .ruff_cache .hypothesis
