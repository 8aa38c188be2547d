"""What-if: predict step time and images/s of other configurations from one profiled run (torch-free).

profile.py reads the input run, terms.py holds each rule as a pure function, link.py picks a
bandwidth, gpus.py is the datasheet table, predict.py sums the terms with their basis,
check.py predicts measured runs to show the error, advice.py writes HTCondor request lines,
wording.py renders, cli.py is `python -m analysis.whatif`.
"""
