"""What-if: predict step time and images/s of other configurations from one profiled run (torch-free).

profile.py reads the input run (anyone's, with what the user states), terms.py holds each rule as a
pure function, link.py picks a bandwidth (the GPU table is analysis.datasheet), prediction.py is
what a prediction holds, predict.py sums the terms with their basis (loading.py: the data term,
ranks.py: CPU DDP from the calibrated ranks), ask.py turns a request into configurations,
check.py predicts measured runs to show the error, advice.py provisions each configuration at
its own allocation and writes the HTCondor request lines, wording.py renders, cli.py is
`python -m analysis.whatif`.
"""
__all__ = ["advice", "ask", "check", "cli", "link", "loading", "predict", "prediction", "profile", "ranks", "terms",
           "wording"]
