"""Explain: read traces/, break steps down, model scaling, findings, report.

Never imports torch or `models`: it must run where torch is absent or slow to import.
"""
