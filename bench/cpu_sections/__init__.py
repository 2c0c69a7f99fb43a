"""The sections of bench/cpu_bench.py, one module per subject; each section records into the Table it is given."""
