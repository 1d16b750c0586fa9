"""Where gradprobe is used from: the CLI, the pytest plugin, the training monitor, benchmarks, info."""
