r"""Label-free audiovisual pretraining: AVS + rotation prediction (paper section 6, A.8).

Any prepared dataset works; its labels are never read (the paper pretrains on
Kinetics-400 without its labels):

  python -m avslowfast_jax.main --config configs/pretrain.py:avslowfast_8x8_r50 \
      --workdir /tmp/ssl_8x8 --config.data.data_dir=/data/k400_shards

Variants: ``avslowfast_{4x16,8x8,16x4}_r50`` (AVS + rotation), the visual-only
``slowfast_4x16_r50`` (rotation only: the SlowFast row of Table A.1) and a
``tiny_`` prefix of each (tests); the quickstart's tiny model on the built-in
synthetic dataset is ``avslowfast_jax/studies/configs/pretrain_synthetic.py``.
Pretext ablations (Table A.1) are overrides:

  AVS only:      --config.pretext.rotation=False
  rotation only: --config.avs.enabled=False

Recipe (appendix A.8): 120k iterations at batch 1024, lr 1.6 divided by 10 at
80k, 100k and 110k, linear warm-up from lr 0.001 over the first 10k; AVS with
easy negatives only for the first 60k iterations, then 1/4 hard ones. The rest
is the Kinetics recipe (SGD with momentum 0.9, weight decay 1e-4, DropPathway
0.8). ``train.batch_size`` is the global batch and the lr follows it linearly
from 1024. The checkpoint feeds the transfer protocols
(``python -m avslowfast_jax.tools.transfer``, configs/ucf101.py, configs/hmdb51.py).
"""

from configs import common

INSTANTIATIONS = ('avslowfast_4x16_r50', 'avslowfast_8x8_r50', 'avslowfast_16x4_r50',
                  'slowfast_4x16_r50')
VARIANTS = (*INSTANTIATIONS, *(f'tiny_{v}' for v in INSTANTIATIONS))


def set_pretraining(c):
  """Task ``pretrain`` with both pretexts on (those the architecture has), no evaluation."""
  c.task = 'pretrain'
  c.pretext.rotation = True
  c.train.eval_every_steps = -1  # nothing labelled to evaluate: transfer evaluates
  c.train.best_metric = 'loss'
  c.data.random_flip = True
  return c


def get_config(variant: str = 'avslowfast_8x8_r50'):
  c = common.base_config()
  tiny, name = common.split_tiny(variant)
  common.set_instantiation(c, name)
  if tiny:
    common.tiny_model(c)
  c.data.name = 'kinetics'
  set_pretraining(c)
  t = c.train
  t.batch_size = 1024
  t.reference_batch_size = 1024
  t.base_lr = 1.6
  t.total_steps = 120_000
  t.schedule = 'steps'
  t.lr_decay_steps = (80_000, 100_000, 110_000)
  t.warmup_steps = 10_000
  t.warmup_start_lr = 0.001
  # Easy negatives for the first 60k of the 120k iterations, then 1/4 hard ones.
  c.avs.hard_start = 0.5
  c.avs.hard_fraction = 0.25
  return c
