"""Print HTA's temporal and kernel-type breakdown of one trace folder: how PROVENANCE.md's HTA figures were made.

Run in a scratch venv with HolisticTraceAnalysis (never a dependency of this project):

    python3 -m venv /tmp/hta && /tmp/hta/bin/pip install holistictraceanalysis
    mkdir -p /tmp/t && cp tests/data/hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz /tmp/t/
    /tmp/hta/bin/python tests/data/hta/hta_breakdown.py /tmp/t
    HTA_DISABLE_NS_ROUNDING=1 /tmp/hta/bin/python tests/data/hta/hta_breakdown.py /tmp/t
"""
import sys

import pandas as pd
from hta.trace_analysis import TraceAnalysis

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 20)
analysis = TraceAnalysis(trace_dir=sys.argv[1])
print("== get_temporal_breakdown(visualize=False)")
print(analysis.get_temporal_breakdown(visualize=False))
print("\n== get_gpu_kernel_breakdown(visualize=False): kernel_type_df")
kernel_types, kernel_metrics = analysis.get_gpu_kernel_breakdown(visualize=False)
print(kernel_types)
print("\n== kernel_metrics_df")
print(kernel_metrics)
