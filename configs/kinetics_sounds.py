r"""Kinetics-Sounds (the 32 audible Kinetics classes; paper Table 2, "KS"), from scratch.

  python -m avslowfast_jax.main --config configs/kinetics_sounds.py:avslowfast_4x16_r50 \
      --workdir /tmp/ks --config.data.data_dir=/data/kinetics_sounds_shards

Prepare with ``python -m data_pipelines.prepare --dataset kinetics_sounds ...``.
Variants: ``{avslowfast,slowfast,audio}_4x16_r50`` (and ``tiny_`` prefixes).
The recipe is the Kinetics one; the 32-class subset has ~22k training clips,
so the same number of epochs is a much shorter run.
"""

from configs import common

VARIANTS = ('avslowfast_4x16_r50', 'slowfast_4x16_r50', 'audio_4x16_r50',
            'tiny_avslowfast_4x16_r50')


def get_config(variant: str = 'avslowfast_4x16_r50'):
  c = common.base_config()
  tiny, variant = common.split_tiny(variant)
  common.set_instantiation(c, variant)
  c.data.name = 'kinetics_sounds'
  c.model.num_classes = 32
  c.train.num_epochs = 256.0
  if tiny:
    common.tiny_model(c)
  return c
