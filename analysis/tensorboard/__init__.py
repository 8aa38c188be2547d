"""TensorBoard files: the report as event files in each run folder (Scalars and Text tabs), and the note on
the third-party PyTorch Profiler plugin. Submodules are imported on demand: events needs tensorboard's
protobufs, the plugin note only package metadata."""
__all__ = ["events", "profiler_plugin"]
