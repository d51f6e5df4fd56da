"""plexhpc: parallel computing and secure AI agents on MPI.

Actors in the Erlang/OTP style live on MPI ranks and message each other over MPI
point-to-point; see ``docs/ARCHITECTURE.md``. The public API::

    from plexhpc import actor, state, handler, init_handler, host

    @actor
    class Counter:
        count: int = state(default=0)

        @handler("add")
        def add(self, n: int = 1) -> dict:
            self.count += n
            return {"count": self.count}

    with plexhpc.start("app.toml") as job:       # under mpiexec, on every rank
        if job.is_driver:
            print(job.ask("counter", "add", {"n": 2}))
"""

from .actors.spec import (actor, event_actor, fsm_actor, gen_server_actor, handler, init_handler,
                    query_handler, run_handler, signal_handler, state, terminate_handler,
                    workflow_actor)
from .context import DEFAULT_CONTEXT, RequestContext
from .config import AppConfig, load_config
from .errors import (ActorNotFound, AskTimeout, CapabilityDenied, CheckpointRejected,
                     ConfigError, HostUsageError, InvalidMessage, JobFailed, NodeClosed,
                     PlexError, Rejected, RemoteError, RemoteTimeout, StartError, StateError,
                     StateTimeout, UnknownLease)
from .actors.host import host
from .actors.driver import Driver
from .runtime.job import Job, run_app, start

__version__ = "0.1.0"

__all__ = [
    "actor", "gen_server_actor", "state", "handler", "init_handler", "terminate_handler",
    "event_actor", "fsm_actor", "workflow_actor", "run_handler", "signal_handler",
    "query_handler", "RequestContext", "DEFAULT_CONTEXT",
    "CapabilityDenied", "StateError", "StateTimeout", "UnknownLease", "CheckpointRejected",
    "host", "start", "run_app", "Job", "Driver", "AppConfig", "load_config",
    "PlexError", "ConfigError", "InvalidMessage", "ActorNotFound", "AskTimeout",
    "RemoteError", "RemoteTimeout", "NodeClosed", "JobFailed", "Rejected", "HostUsageError", "StartError",
    "__version__",
]
