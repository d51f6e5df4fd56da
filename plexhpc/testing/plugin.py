"""The pytest plugin: one plexhpc job per test, the test body on the driver rank.

How a test runs, under ``mpiexec -n N python -m pytest --with-mpi``:

1. every rank meets the others (timed) and checks they are all at the same test;
2. every rank enters ``plexhpc.start(config)``: on rank 0 (the driver) the job runs on
   a background thread and ``plex_driver`` is its handle; the other ranks serve actors
   inside the fixture's setup until the driver's job ends;
3. the test body runs on the driver only (on the other ranks it is not called: their
   part is serving, and it is over by then);
4. at the driver's teardown the job shuts down; every rank meets again and learns the
   driver's outcome and any rank's job failure, so a test that fails on the driver
   fails on every rank (with the driver's message), a skip skips everywhere, and a job
   that failed on any rank fails the test everywhere.

Why one job per test: a process can start and stop plexhpc any number of times (a
job takes a few ms to start on 2 ranks, ~30 ms on 4 oversubscribed ones), and a fresh
job per test means fresh actors, names, process groups, restart budgets and durable
state (``PLEXHPC_STATE_DIR`` points at a new folder per test). One limit: MPICH has
2048 communicator ids per process and a job currently leaves 3 of them allocated, so
one process runs at most ~680 jobs (tests).

Fixtures that call the driver must check ``plex_driver.is_driver`` first: fixtures run
on every rank, and on the serving ranks they run after the job has ended (a driver
call there raises :class:`~plexhpc.errors.NodeClosed`).
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from .kit import PlexKit
from .sync import OutOfStep, RankSync

__all__ = ["DEFAULT_CONFIG", "plex_config", "plex_driver", "plex"]

#: the app a test's job runs when neither ``plex_config`` nor the marker says otherwise:
#: no static children (the test spawns what it needs)
DEFAULT_CONFIG = {"app": {"name": "pytest"}}

DRIVER_RANK = 0
_MAX_TEXT = 2000
# serving ranks' pytest-timeout fires this much later than the driver's, so a driver
# that times out ends the job (and the serving ranks' wait) first
_SERVE_TIMEOUT_GRACE_S = 30.0

_RUN = pytest.StashKey()      # item -> _TestJob (this test's job, on this rank)
_PHASES = pytest.StashKey()   # item -> {"setup"/"call": (report, excinfo or None)}
_SYNC = pytest.StashKey()     # config -> RankSync


# ----------------------------------------------------------------------------- hooks --

def pytest_addoption(parser):
    """The ini option bounding every wait of the ranks for each other."""
    parser.addini("plexhpc_sync_timeout",
                  "seconds the ranks wait for each other before and after each plexhpc "
                  "test (plexhpc.testing; default 120)", default="120")


def pytest_configure(config):
    """Register the ``plexhpc_app`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers", "plexhpc_app(config, **start_options): the app config (dict or TOML "
        "path, relative to the test file) and plexhpc.start() options of this test's "
        "job (plexhpc.testing)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember how setup and call ended (the report after xfail handling, and the
    exception): the driver's fixture tells the other ranks at teardown."""
    report = yield
    if call.when in ("setup", "call"):
        item.stash.setdefault(_PHASES, {})[call.when] = (report, call.excinfo)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """On a serving rank, do not run the body: report the driver's outcome instead."""
    run = pyfuncitem.stash.get(_RUN, None)
    if run is None or run.is_driver:
        return None
    run.replay()
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout: give serving ranks a longer timeout than the driver's, so the
    driver's timeout (which ends the job) fires first and every rank reports it."""
    if (not settings.timeout or settings.timeout <= 0
            or "plex_driver" not in getattr(item, "fixturenames", ())
            or not _mpi_mode(item.config)):
        return None
    from mpi4py import MPI
    if MPI.COMM_WORLD.Get_rank() == DRIVER_RANK:
        return None
    import pytest_timeout
    return pytest_timeout.pytest_timeout_set_timer(
        item, settings._replace(timeout=settings.timeout + _SERVE_TIMEOUT_GRACE_S))


# -------------------------------------------------------------------------- fixtures --

@pytest.fixture
def plex_config(request):
    """The app config of this test's job: the ``plexhpc_app`` marker's config, else
    :data:`DEFAULT_CONFIG` (no static actors). Override this fixture in a conftest or
    test module to give a whole module one app; a relative TOML path is taken relative
    to the test file. It runs on every rank and must return the same config on each."""
    marker = request.node.get_closest_marker("plexhpc_app")
    if marker is None or not marker.args:
        return copy.deepcopy(DEFAULT_CONFIG)
    return marker.args[0]


@pytest.fixture
def plex_driver(request, plex_config, tmp_path_factory):
    """The driver's handle of a fresh plexhpc job that lives for this test.

    On the driver rank (0) it is the ``job`` of ``with plexhpc.start(plex_config) as
    job:`` (``ask``, ``send``, ``spawn``, ``stop``, ``members``, ``resolve``...) and the
    test body runs there only. The other ranks serve the job's actors during the test,
    then report the driver's outcome. Skipped (with the reason) unless pytest runs with
    ``--with-mpi`` (pytest-mpi), as under ``mpiexec -n N python -m pytest --with-mpi``."""
    _require_mpi(request.config)
    run = _TestJob(request, _resolve_config(request, plex_config), tmp_path_factory)
    request.node.stash[_RUN] = run
    driver = run.setup()
    yield driver
    run.teardown()


@pytest.fixture
def plex(plex_driver):
    """:class:`~plexhpc.testing.PlexKit` around ``plex_driver``: size-agnostic helpers
    (``spawn_each``, ``last_rank``, ``ask_each``, ``stop_each``, ``wait_until``)."""
    return PlexKit(plex_driver)


# ---------------------------------------------------------------------------- the job --

class _TestJob:
    """One test's job on this rank: starts it, ends it, and agrees on the outcome."""

    def __init__(self, request, config, tmp_path_factory):
        from mpi4py import MPI

        self.request = request
        self.item = request.node
        self.nodeid = self.item.nodeid
        self.config = config
        self.tmp_path_factory = tmp_path_factory
        self.rank = MPI.COMM_WORLD.Get_rank()
        self.is_driver = self.rank == DRIVER_RANK
        marker = self.item.get_closest_marker("plexhpc_app")
        self.options = dict(marker.kwargs) if marker is not None else {}
        self.sync = _session_sync(request.config)
        self.job = None
        self.driver = None
        self.outcomes: list | None = None  # every rank's report, after the job
        self._restore = ExitStack()

    # -- the ranks meet --

    def _agree(self, phase: str, value) -> list:
        try:
            return self.sync.agree(phase, self.nodeid, value)
        except OutOfStep as exc:
            pytest.fail(f"plexhpc.testing: {exc}", pytrace=False)

    # -- setup / teardown --

    def setup(self):
        import plexhpc

        state_dir = self._state_dir() if self.is_driver else None
        state_dir = self._agree("start", state_dir)[DRIVER_RANK]
        self._restore.enter_context(_signals_kept())
        start_error = job_error = None
        try:
            with _env(PLEXHPC_STATE_DIR=state_dir):
                self.job = plexhpc.start(self.config, driver_rank=DRIVER_RANK,
                                         **self.options)
                self.driver = self.job.__enter__()  # serving ranks: the whole job
        except Exception as exc:  # noqa: BLE001 - every rank must reach the meeting
            # on a serving rank the job has run by now: only a start-up failure (or a
            # bad config) is one in setup; anything else ended a running job
            if self.is_driver or isinstance(exc, (plexhpc.StartError, plexhpc.ConfigError)):
                start_error = _describe(exc, self.rank)
            else:
                job_error = _describe(exc, self.rank)
        if self.is_driver and start_error is None:
            return self.driver  # the test runs; the meeting is at teardown
        self._restore.close()
        report = {"rank": self.rank, "start": start_error, "job": job_error, "test": None}
        self.outcomes = self._agree("end", report)
        started = [o["start"] for o in self.outcomes if o["start"]]
        if started:  # the job did not start: an error in setup, on every rank
            pytest.fail("plexhpc.testing: the job did not start:\n" + "\n".join(started),
                        pytrace=False)
        return self.driver

    def teardown(self):
        if not self.is_driver or self.outcomes is not None:
            return
        job_error = None
        try:
            self.job.__exit__(None, None, None)
        except Exception as exc:  # noqa: BLE001
            job_error = _describe(exc, self.rank)
        finally:
            self._restore.close()
        report = {"rank": self.rank, "start": None, "job": job_error,
                  "test": _driver_outcome(self.item)}
        self.outcomes = self._agree("end", report)
        failed = self._job_failures()
        if failed:
            pytest.fail("plexhpc.testing: the job failed:\n" + failed, pytrace=False)

    def _job_failures(self) -> str:
        return "\n".join(o["job"] or o["start"] for o in self.outcomes
                         if o["job"] or o["start"])

    def replay(self):
        """On a serving rank: end the test the way it ended on the driver."""
        driver = self.outcomes[DRIVER_RANK]["test"] or ("passed", "")
        kind, text = driver
        if kind == "failed":
            pytest.fail(f"failed on the driver rank {DRIVER_RANK}:\n{text}", pytrace=False)
        failed = self._job_failures()
        if failed:
            pytest.fail("plexhpc.testing: the job failed:\n" + failed, pytrace=False)
        if kind == "xfailed":
            pytest.xfail(text)
        if kind == "skipped":
            try:  # reported at the test's location, as the driver reports it
                raise pytest.skip.Exception(text, _use_item_location=True)
            except TypeError:  # a pytest without that keyword
                pytest.skip(text)

    def _state_dir(self) -> str:
        """A fresh folder for the job's durable state: under ``$PLEXHPC_STATE_DIR`` when
        the user set one (a shared file system, say), else in pytest's temporary folder.
        An explicit ``[state] dir`` in the config still wins."""
        base = os.environ.get("PLEXHPC_STATE_DIR")
        if base:
            path = Path(base) / f"pytest-{uuid.uuid4().hex[:12]}"
            path.mkdir(parents=True, exist_ok=True)
            return str(path)
        return str(self.tmp_path_factory.mktemp("plexhpc-state"))


# --------------------------------------------------------------------------- helpers --

def _mpi_mode(config) -> bool | None:
    """True under ``--with-mpi``/``--only-mpi``; None when pytest-mpi is not loaded."""
    try:
        return bool(config.getoption("--with-mpi") or config.getoption("--only-mpi"))
    except ValueError:  # no such option: pytest-mpi is not installed (or -p no:mpi)
        return None


def _require_mpi(config) -> None:
    mode = _mpi_mode(config)
    if mode is None:
        pytest.skip("plexhpc.testing needs the pytest-mpi plugin (pip install pytest-mpi)")
    if not mode:
        pytest.skip("plexhpc.testing: needs an MPI run: "
                    "mpiexec -n N python -m pytest --with-mpi")


def _session_sync(config) -> RankSync:
    sync = config.stash.get(_SYNC, None)
    if sync is None:
        timeout = float(config.getini("plexhpc_sync_timeout") or 120)
        sync = config.stash[_SYNC] = RankSync(timeout)
    return sync


def _resolve_config(request, config):
    """A relative TOML path is relative to the test file (when it exists there)."""
    if isinstance(config, (str, os.PathLike)) and not os.path.isabs(config):
        here = Path(request.node.path).parent / config
        if here.exists():
            return str(here)
    return config


def _describe(exc: BaseException, rank: int) -> str:
    return _clip(f"rank {rank}: {type(exc).__name__}: {exc}")


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + " [...]"


def _driver_outcome(item) -> tuple:
    """(kind, text) of the test on the driver: passed, failed, skipped or xfailed.

    Taken from the final reports, so an xfail marker's verdict (including ``raises=``)
    is the driver's; a strict XPASS replays as a pass, which the serving ranks' own
    marker then turns into the same XPASS(strict) failure."""
    phases = item.stash.get(_PHASES, {})
    for when in ("setup", "call"):
        report, excinfo = phases.get(when, (None, None))
        if report is None or report.passed:
            continue
        if report.skipped:
            reason = (str(excinfo.value) if excinfo is not None
                      else str(getattr(report, "wasxfail", "")))
            if hasattr(report, "wasxfail"):
                return ("xfailed", getattr(report, "wasxfail", "") or reason)
            return ("skipped", reason)
        if excinfo is None:  # failed without an exception: a strict XPASS
            return ("passed", "")
        prefix = "" if when == "call" else "in setup: "
        return ("failed", _clip(prefix + excinfo.exconly()))
    return ("passed", "")


@contextmanager
def _env(**values):
    """Set environment variables for the block (None leaves one as it is)."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _signals_kept():
    """Restore SIGINT/SIGTERM handlers afterwards: a job installs its own (a graceful
    shutdown), which would otherwise outlive it and swallow Ctrl-C for the session."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
