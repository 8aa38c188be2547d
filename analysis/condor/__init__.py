"""The HTCondor side of the analysis: `python -m analysis.condor.collect` unpacks the jobs' returned run folders."""
__all__ = ["collect"]
