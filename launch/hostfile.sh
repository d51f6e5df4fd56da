#!/usr/bin/env bash
# Run across the hosts in a hostfile: launch/hostfile.sh HOSTFILE APP.toml RANKS
# Every host needs the same Python environment and the app's files at the same path
# (a shared filesystem, or a copy). MPICH's mpiexec takes -f; Open MPI's mpirun takes
# --hostfile: set PLEXHPC_MPIEXEC_ARGS accordingly when you use `plexhpc run -n`.
set -euo pipefail
hosts=${1:?usage: launch/hostfile.sh HOSTFILE APP.toml RANKS}
app=${2:?usage: launch/hostfile.sh HOSTFILE APP.toml RANKS}
ranks=${3:?usage: launch/hostfile.sh HOSTFILE APP.toml RANKS}
exec mpiexec -f "$hosts" -n "$ranks" python -m plexhpc run "$app"
