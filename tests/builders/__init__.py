"""Builders the tests share (not tests themselves): import them as `from builders.kineto import ...`.

tests/ is on sys.path the same way `from conftest import ...` works: pytest's default (prepend) import
mode puts the rootdir-less test folder, tests/, first on sys.path before it imports a test module.

  kineto  small synthetic Kineto traces (TraceBuilder and the step shapes built with it)
  runs    hand-made analyses (TraceAnalysis / RunAnalysis), run.json as the contract Structs, run folders
"""
