"""Findings and recommendations: rules over the measured runs that return typed figures, never sentences.

thresholds (every number a rule compares with) -> figures (the records) -> rules (findings) ->
recommend (ranked by predicted saving). The words are analysis.view.phrasing's.
"""
from analysis.findings.figures import Finding, Recommendation, Where, figures_dict, where
from analysis.findings.recommend import recommendations
from analysis.findings.rules import all_findings, baseline_of, cpu_notes, cpu_saturated, findings_for
from analysis.findings.thresholds import THRESHOLDS, Thresholds, thresholds_dict

__all__ = ["THRESHOLDS", "Thresholds", "thresholds_dict", "Finding", "Recommendation", "Where", "where",
           "figures_dict", "findings_for", "all_findings", "cpu_notes", "cpu_saturated", "baseline_of",
           "recommendations"]
