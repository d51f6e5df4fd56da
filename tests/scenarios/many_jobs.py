"""One process runs many jobs in a row (what a test suite on the pytest plugin does).

Each job duplicates communicators and allocates a shared window; unless they are freed,
MPICH runs out of context ids after about 680 jobs. Rank 0 prints a RESULT line with the
number of jobs run and the answers their actors gave."""

import json
import sys

import plexhpc


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 900
    answers = 0
    for _ in range(n):
        with plexhpc.start({}) as job:
            if job.is_driver and job.size > 1:
                ref = job.spawn("lib_actors:Probe", rank=job.size - 1)
                answers += job.ask(ref, "whoami")["rank"] == job.size - 1
    with plexhpc.start({}) as job:
        if job.is_driver:
            print("RESULT " + json.dumps({"jobs": n, "answers": answers}), flush=True)


if __name__ == "__main__":
    main()
