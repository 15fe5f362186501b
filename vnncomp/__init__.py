"""vnncomp: emit VNN-COMP benchmarks and alpha-beta-CROWN configs; read verifiers' answers."""
