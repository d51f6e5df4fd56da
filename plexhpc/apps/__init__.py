"""Applications built on plexhpc: the parallel-inference benchmark, the parameter server."""
