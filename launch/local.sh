#!/usr/bin/env bash
# Run an app on this machine: launch/local.sh APP.toml [RANKS]
# Uses the mpiexec that the mpich wheel installed next to this environment's python
# (plexhpc run finds it), so the launcher always matches the MPI that mpi4py loads.
set -euo pipefail
app=${1:?usage: launch/local.sh APP.toml [RANKS]}
ranks=${2:-2}
exec plexhpc run "$app" -n "$ranks"
