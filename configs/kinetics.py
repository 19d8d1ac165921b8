r"""Kinetics-400 from scratch (paper Table 2, appendix A).

Variants: ``{avslowfast,slowfast,audio}_{4x16,8x8}_r{50,101}``, with a
``tiny_`` prefix for the few-thousand-parameter model used in tests, e.g.

  python -m avslowfast_jax.main --config configs/kinetics.py:avslowfast_4x16_r50 \
      --workdir /tmp/k400 --config.data.data_dir=/data/k400_shards
"""

from configs import common


def get_config(variant: str = 'avslowfast_4x16_r50'):
  c = common.base_config()
  tiny = variant.startswith('tiny_')
  if tiny:
    variant = variant[len('tiny_'):]
  common.set_instantiation(c, variant)
  c.data.name = 'kinetics'
  c.model.num_classes = 400
  # Paper appendix A: 256 epochs for T <= 4, 196 for T > 4; lr 1.6 at batch
  # 1024 (= 0.1 at 64) with linear warm-up from 0.01.
  c.train.num_epochs = 256.0 if c.data.num_frames // c.model.alpha_f <= 4 else 196.0
  if tiny:
    common.tiny_model(c)
  return c
