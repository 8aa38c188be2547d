"""`python -m analysis.export RUN --out FILE[.json|.json.gz]`: one run's traces merged into one timeline.

Every rank's and device's events of a run folder, one process per trace file on one clock, with
scalescope's exclusive breakdown pieces and phase labels as tracks of their own, in one Chrome-trace
JSON that Perfetto and chrome://tracing open. Written in bounded memory, one trace at a time
(writer.py); cli.py is the command line.
"""
__all__ = ["cli", "writer"]
