"""Tools around the pipeline: the synthetic shop generator, the mypyc build of the pure core
(with the loader the core packages call), and the right-to-erasure tool."""
