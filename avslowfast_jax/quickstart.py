"""``python -m avslowfast_jax.quickstart``: the main job (avslowfast_jax/studies/quickstart.py)."""

from avslowfast_jax.studies.quickstart import main
from data_pipelines import errors

if __name__ == '__main__':
  errors.run(main)
