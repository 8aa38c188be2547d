"""`python -m analysis.report`: the CLI, the self-contained index.html and its plots (matplotlib, imported
only when figures are drawn). Renders the view; decides nothing."""
__all__ = ["cli", "html", "outputs", "plots"]
