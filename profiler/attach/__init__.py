"""`python -m profiler.attach -- COMMAND`: profile a training script that knows nothing of scalescope.

The parent (`cli`) owns the run folder, run.json and the sampler, as `models.train` does; every
Python training process of COMMAND's tree loads `boot/sitecustomize.py` (first on PYTHONPATH,
chaining any other sitecustomize), which waits for `import torch` and then runs `inprocess`: a
torch.profiler session stepped by the optimizer, DataParallel's phases labelled, and a report of
what the process could learn (`report.ProcessReport`) that the parent merges into run.json.
"""
