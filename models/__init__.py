"""Produce: the seed CNN, data, parallel strategies, the profiled training runner and sweep."""
