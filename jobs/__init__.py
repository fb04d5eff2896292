"""The application functions behind the commands: one per job, given settings and values.

The CLI (cli/) parses and builds settings, then calls one function here; these compose the
rooms (runtimes, replay, reports, tools) and print what the job did. No parsing here.
"""
