"""The ``plexhpc`` command: run apps and benchmarks, launching mpiexec when needed.

``plexhpc run APP.toml -n 4`` starts ``mpiexec -n 4 python -m plexhpc run APP.toml``;
inside an MPI launch (``mpiexec -n 4 python -m plexhpc run APP.toml``) it runs the node.
Exit status: 0 success, 1 the job failed, 2 bad usage or an invalid app config.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["main", "BENCHMARKS_ENV", "benchmarks_dir", "import_benchmarks",
           "BenchmarksMissing"]

#: Overrides where ``plexhpc bench`` looks for the benchmark suites (a folder named
#: ``benchmarks``); ranks launched by ``plexhpc bench -n N`` inherit it.
BENCHMARKS_ENV = "PLEXHPC_BENCHMARKS_DIR"

_PLOT_HINT = "pip install 'plexhpc[plot]'"


class BenchmarksMissing(RuntimeError):
    """The benchmark suites are not there (an installed wheel has none)."""


def benchmarks_dir() -> Path:
    """Where the benchmark suites live: ``$PLEXHPC_BENCHMARKS_DIR`` when set, else the
    top-level ``benchmarks/`` folder next to the ``plexhpc`` package directory, which a
    source checkout has and an installed wheel does not."""
    override = os.environ.get(BENCHMARKS_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / "benchmarks"


def _missing_message(directory: Path) -> str:
    return (f"plexhpc bench: the benchmark suites are not here (looked for a "
            f"'benchmarks' package at {directory})\n"
            "The benchmarks ship with the source checkout, not with the installed "
            "package. To run them:\n"
            "  git clone <the plexhpc repository> plexhpc && cd plexhpc\n"
            "  pip install -e '.[test]'\n"
            "  plexhpc bench NAME ...        # from the checkout, e.g. plexhpc bench "
            "collectives -n 2\n"
            f"({BENCHMARKS_ENV} can point at a checkout's benchmarks/ folder instead.)")


def import_benchmarks(directory: Path | None = None):
    """Import the ``benchmarks`` package from ``directory`` (default
    :func:`benchmarks_dir`), putting its parent first on ``sys.path``; raises
    :class:`BenchmarksMissing` with instructions when it is not there."""
    directory = Path(directory) if directory is not None else benchmarks_dir()
    if directory.name != "benchmarks" or not (directory / "__init__.py").is_file():
        raise BenchmarksMissing(_missing_message(directory))
    parent = str(directory.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    mod = importlib.import_module("benchmarks")
    where = Path(getattr(mod, "__file__", None) or ".").resolve().parent
    if where != directory.resolve():
        raise BenchmarksMissing(f"plexhpc bench: the module 'benchmarks' was imported "
                                f"from {where}, not from {directory} (another package "
                                f"of that name shadows the checkout's)")
    return mod


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plexhpc", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run an app (its [app].main call, or serve until "
                         "SIGTERM/SIGINT)")
    run.add_argument("app", help="app config TOML file")
    run.add_argument("-n", "--ranks", type=int, default=None,
                     help="launch this many ranks with mpiexec (omit inside mpiexec)")
    run.add_argument("--json", action="store_true", help="print the main call's reply as "
                     "one JSON line")
    run.add_argument("--log-level", default=None, help="debug, info, warning (default), error")

    bench = sub.add_parser("bench", help="benchmarks that print JSON and Markdown reports "
                           "(from a source checkout: they live in its benchmarks/ folder)")
    bench.add_argument("suite", choices=["actors", "collectives", "shards", "state"],
                       help="which benchmark")
    bench.add_argument("-n", "--ranks", type=int, default=None,
                       help="launch this many ranks with mpiexec (default 2; omit inside "
                       "mpiexec)")
    bench.add_argument("--json", action="store_true", help="print only the JSON object")
    bench.add_argument("--quick", action="store_true", help="few iterations (a smoke run; "
                       "the numbers mean little)")
    bench.add_argument("--report", default=None, metavar="DIR",
                       help="also write JSON and Markdown reports into DIR (shards: "
                       "also a shards.png chart, which needs matplotlib, "
                       f"{_PLOT_HINT}; without it the chart is skipped with a "
                       "warning)")
    shards = bench.add_argument_group("shards")
    shards.add_argument("--shards", default="2,4,8,16,32", help="shard counts to measure")
    shards.add_argument("--requests", type=int, default=256,
                        help="requests in total (strong scaling) or per shard (--weak)")
    shards.add_argument("--weak", action="store_true", help="weak scaling")
    shards.add_argument("--model", default="medium", choices=["small", "medium", "large"],
                        help="model size (default medium: ~3.6 ms of compute per request)")
    shards.add_argument("--batch", type=int, default=64, help="rows per request")
    shards.add_argument("--kb", type=float, default=256.0, help="KB per request")
    shards.add_argument("--mode", default="scaling", choices=["scaling", "pool", "collective"],
                        help="shard scaling (default), the pool mode or the collective mode")
    shards.add_argument("--lanes", type=int, default=2,
                        help="concurrent client streams of scatter_gather rounds")
    return p


def _forward_args(args, skip=("ranks",)) -> list:
    out = []
    for key, value in vars(args).items():
        if key in skip or key in ("command", "version", "app", "suite") or value is None \
                or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def main(argv: list | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    import mpi4py

    from .runtime.mpiutil import launched_by_mpi
    if getattr(args, "log_level", None):
        os.environ["PLEXHPC_LOG"] = args.log_level

    if args.command == "run":
        if args.ranks is not None and not launched_by_mpi():
            mpi4py.rc.initialize = False  # the parent only launches; it is not a rank
            from .config import load_config
            from .errors import ConfigError
            try:
                load_config(args.app, world_size=args.ranks)
            except ConfigError as exc:
                print(f"plexhpc: invalid app config: {exc}", file=sys.stderr)
                return 2
            from .runtime.launcher import relaunch
            return relaunch(args.ranks, ["-m", "plexhpc", "run", args.app, *_forward_args(args)])
        from .runtime.job import run_app
        return run_app(args.app, json_lines=args.json)

    if args.command == "bench":
        parent = not launched_by_mpi()
        if parent:
            mpi4py.rc.initialize = False  # the parent only launches; it is not a rank
        try:
            suites = import_benchmarks()  # fail here, before launching any rank
        except BenchmarksMissing as exc:
            print(exc, file=sys.stderr)
            return 2
        if parent:
            if (args.suite == "shards" and args.report and args.mode == "scaling"
                    and importlib.util.find_spec("matplotlib") is None):
                print(f"plexhpc bench: warning: matplotlib is not installed, so the "
                      f"report will have no shards.png chart ({_PLOT_HINT})",
                      file=sys.stderr)
            from .runtime.launcher import relaunch
            n = args.ranks if args.ranks is not None else 2
            return relaunch(n, ["-m", "plexhpc", "bench", args.suite, *_forward_args(args)])
        return suites.run_suite(args.suite, args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
