"""The scalescope dashboard inside TensorBoard: one tab with the report's view of every run under --logdir.

`plugin` is the TBPlugin TensorBoard loads through the `tensorboard_plugins` entry point (routes
under /data/plugin/scalescope/); `data` turns the run folders into the dashboard's JSON, caching each
run's analysis by its files' mtimes; `static/` is the ES module (plain SVG, no chart library) and its
CSS. Torch-free like the rest of analysis/: it runs in TensorBoard's process on a submit node.
"""
PLUGIN_NAME = "scalescope"
__all__ = ["PLUGIN_NAME", "data", "plugin"]
