"""Tasks: what the model is trained to predict (head, loss, metrics, evaluation).

See :mod:`avslowfast_jax.tasks.base` for the interface and how to add one.
"""

from avslowfast_jax.tasks import (  # noqa: F401 (registers)
    classification, detection, multilabel, pretrain, verb_noun)
from avslowfast_jax.tasks.base import TASKS, Task, VideoEvaluation, get_task, register

__all__ = ['TASKS', 'Task', 'VideoEvaluation', 'get_task', 'register']
