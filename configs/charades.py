r"""Charades multi-label classification: fine-tune 16x8 R101+NL from Kinetics (paper Table 4).

  python -m avslowfast_jax.main --config configs/charades.py:avslowfast_16x8_r101_nl \
      --workdir /tmp/charades --config.data.data_dir=/data/charades_shards \
      --config.train.init_from=/tmp/k400_16x8_r101_nl

Per-class sigmoid, max over the test views, mAP; dropout 0.7; batch 8, lr
0.07, 40k iterations with one 10x decay at 32k. For memory-limited GPUs add
``--config.train.fsdp=True``.
"""

from configs import common

VARIANTS = ('avslowfast_16x8_r101_nl', 'slowfast_16x8_r101_nl', 'tiny_avslowfast_16x8_r101_nl')


def get_config(variant: str = 'avslowfast_16x8_r101_nl'):
  c = common.base_config()
  tiny, variant = common.split_tiny(variant)
  common.set_instantiation(c, variant)
  c.data.name = 'charades'
  c.task = 'multilabel'
  c.model.num_classes = 157
  c.model.dropout_rate = 0.7
  c.eval.aggregate = 'max'
  t = c.train
  t.batch_size = 8
  t.reference_batch_size = 8
  t.base_lr = 0.07
  t.total_steps = 40000
  t.warmup_steps = 0
  t.warmup_epochs = 0.0
  t.schedule = 'steps'
  t.lr_decay_steps = (32000,)
  t.best_metric = 'mAP'
  t.eval_every_steps = 4000
  t.checkpoint_every_steps = 2000
  t.init_skip = ('head',)
  if tiny:
    common.tiny_model(c)
  return c
