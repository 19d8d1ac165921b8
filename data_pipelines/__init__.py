"""Video preparation and tf.data input pipelines (docs/design.md, "Prepared data")."""

from data_pipelines import startup as _startup

_startup.quiet_tensorflow_startup()
