"""Starting a job: ``plexhpc.start()`` for driver scripts, :func:`run_app` for the CLI.

Both are SPMD: every rank calls them with the same config. The config is validated on
every rank and the outcome agreed on collectively before any actor starts, so a bad
config stops every rank with the same :class:`~plexhpc.errors.ConfigError`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from mpi4py import MPI

from .. import errors as E
from ..actors.driver import Driver
from ..config import AppConfig, load_config
from .mpiutil import allreduce_timed
from .node import Node

__all__ = ["start", "Job", "load_config_everywhere", "run_app"]


def load_config_everywhere(source, comm: MPI.Comm, *, timeout_s: float = 60.0) -> AppConfig:
    """Load ``source`` on every rank of ``comm``; all succeed or all raise ConfigError.

    The error message is attached on the ranks where loading failed; the others learn
    which rank failed first. ``err.first_rank`` says which rank's message to print."""
    size, rank = comm.Get_size(), comm.Get_rank()
    err = cfg = None
    try:
        cfg = load_config(source, world_size=size)
    except E.ConfigError as exc:
        err = exc
    first_bad = allreduce_timed(comm, rank if err else size, MPI.MIN, timeout_s=timeout_s,
                                what="checking the app config")
    if first_bad < size:
        if err is None:
            err = E.ConfigError(f"the app config failed to load on rank {first_bad} "
                                "(its message says why)")
        err.first_rank = first_bad
        raise err
    return cfg


class Job:
    """The context manager :func:`start` returns; entering it starts the node and gives
    the :class:`~plexhpc.actors.driver.Driver` handle."""

    def __init__(self, config, *, comm=None, driver_rank: int = 0, **node_options):
        self._source = config
        self._comm = comm if comm is not None else MPI.COMM_WORLD
        self._driver_rank = driver_rank
        self._options = node_options
        self.node: Node | None = None

    def __enter__(self) -> Driver:
        if isinstance(self._source, AppConfig):
            cfg = self._source
        else:
            cfg = load_config_everywhere(self._source, self._comm)
        node = Node(cfg, comm=self._comm, driver_rank=self._driver_rank, **self._options)
        self.node = node
        life = node.lifecycle
        if not node.is_driver:
            if threading.current_thread() is threading.main_thread():
                node.install_signal_handlers()
            node.serve()
            life.raise_if_failed()
            return Driver(node)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda s, f: node.hub.request_signal(s))
        node.serve_in_thread()
        if not node.running:  # start-up failed or a shutdown came first
            node.join(life.stop_timeout_s + node.config.drain_timeout_s + 5)
            raise E.StartError(life.start_error or
                               f"the job stopped during start-up: {life.reason}")
        return Driver(node)

    def __exit__(self, exc_type, exc, tb) -> bool:
        node = self.node
        if node is None or not node.is_driver:
            return False
        if exc_type is None:
            reason, code = "the driver finished", 0
        else:
            reason, code = f"the driver raised {exc_type.__name__}: {exc}", 1
        try:
            node.hub.call_soon(lambda: node.request_shutdown(reason, code))
        except E.NodeClosed:
            pass
        node.join(node.config.drain_timeout_s + node.lifecycle.stop_timeout_s + 10)
        if exc_type is None and node.exit_code:
            raise E.JobFailed(f"the job stopped with status {node.exit_code}: "
                              f"{node.lifecycle.reason}", exit_code=node.exit_code)
        return False


def start(config, *, comm: MPI.Comm | None = None, driver_rank: int = 0,
          **node_options) -> Job:
    """Start the app on every rank: ``with plexhpc.start("app.toml") as job:``.

    On the driver rank (0) the node runs on a background thread and the block drives the
    job with ``job.ask/send/spawn`` (a :class:`~plexhpc.actors.driver.Driver`). On the
    other ranks entering the block serves until the driver leaves it, then returns a
    closed handle; guard driver code with ``if job.is_driver:`` (the mpi4py
    ``MPICommExecutor`` idiom). ``config`` is a path to an app TOML file or a dict of the
    same shape."""
    return Job(config, comm=comm, driver_rank=driver_rank, **node_options)


def run_app(source, *, json_lines: bool = False) -> int:
    """``plexhpc run``: serve the app until SIGTERM/SIGINT, a shutdown, or the end of its
    ``[app].main`` call (whose reply rank 0 prints as JSON). Returns the exit status."""
    comm = MPI.COMM_WORLD
    try:
        cfg = load_config_everywhere(source, comm)
    except E.ConfigError as exc:
        if getattr(exc, "first_rank", 0) == comm.Get_rank():
            print(f"plexhpc: invalid app config: {exc}", file=sys.stderr, flush=True)
        return 2
    node = Node(cfg, comm=comm, driver_rank=None)
    node.install_signal_handlers()
    if cfg.main is not None and node.rank == 0:
        main = cfg.main

        def finished(ok, value):
            if ok:
                text = json.dumps(value, default=str, indent=None if json_lines else 2)
                print(text, flush=True)
                node.request_shutdown("main call finished", 0)
            else:
                print(f"plexhpc: {main.actor}.{main.op} failed: {type(value).__name__}: "
                      f"{value}", file=sys.stderr, flush=True)
                node.request_shutdown("main call failed", 1)

        node.lifecycle.on_started.append(lambda: node.start_ask(
            main.actor, main.op, main.payload, main.timeout_ms, finished, "$main@0"))
    code = node.serve()
    if node.lifecycle.start_error and node.rank == 0:
        print(f"plexhpc: {node.lifecycle.start_error}", file=sys.stderr, flush=True)
    if node.lifecycle.unclean:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 1)
    return code
