"""Observe: torch.profiler session, NVML + host sampler, phase labels, run writer.

Importing this package must stay torch-free: `analysis` imports `profiler.contract`.
"""
