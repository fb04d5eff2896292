"""The `refstream` command line: thin Click entry points, one per job.

Each command parses its options, builds the settings and calls one application function
(jobs/ or the room that owns the job); errors become exit codes in one place (cli/main.py).
"""
