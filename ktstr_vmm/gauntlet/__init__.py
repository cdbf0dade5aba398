"""ktstr gauntlet: a matrix of ordinary runs (schedulers x topologies x kernels) on Dask
distributed, grouped under a gauntlet id; and its verifier sweep."""
