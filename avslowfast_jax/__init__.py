"""AVSlowFast in JAX/Flax: models, tasks, training, evaluation, export (README.md)."""

from data_pipelines import startup as _startup

_startup.quiet_tensorflow_startup()
