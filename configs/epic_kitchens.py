r"""EPIC-Kitchens-55 action recognition: fine-tune from Kinetics (paper Table 3).

  python -m avslowfast_jax.main --config configs/epic_kitchens.py:avslowfast_8x8_r50 \
      --workdir /tmp/epic --config.data.data_dir=/data/epic_shards \
      --config.train.init_from=/tmp/k400_8x8

Verb and noun heads (``task=verb_noun``) on one network, BatchNorm
frozen (affine), batch 32, lr 0.01 with step decay by 10 at 2/3 and 5/6 of
training. ``train.init_from`` points at a Kinetics checkpoint (workdir, step
dir or export); ``train.init_skip`` leaves the new heads randomly initialised.

The paper quotes lr 0.01 for the verb and 0.0006 for the noun model; the
``noun`` variant trains with the noun learning rate (the verb/noun loss is
the sum of both heads' cross-entropies in every variant).
"""

from configs import common

VARIANTS = ('avslowfast_8x8_r50', 'slowfast_8x8_r50', 'avslowfast_8x8_r50_noun',
            'tiny_avslowfast_8x8_r50')


def get_config(variant: str = 'avslowfast_8x8_r50'):
  c = common.base_config()
  tiny, variant = common.split_tiny(variant)
  noun = variant.endswith('_noun')
  if noun:
    variant = variant[:-len('_noun')]
  common.set_instantiation(c, variant)
  c.data.name = 'epic_kitchens'
  c.data.eval_split = 'validation'
  c.task = 'verb_noun'
  c.model.num_classes = 125  # verbs
  c.model.num_nouns = 352
  c.model.freeze_bn = True
  t = c.train
  t.batch_size = 32
  t.reference_batch_size = 32  # lr given at this batch
  t.base_lr = 0.0006 if noun else 0.01
  t.warmup_epochs = 0.0
  t.schedule = 'steps'
  t.num_epochs = 30.0
  t.lr_decay_epochs = (20.0, 25.0)  # 2/3 and 5/6 of training
  t.init_skip = ('head',)
  t.best_metric = 'action_top1'
  t.eval_every_epochs = 2.0
  if tiny:
    common.tiny_model(c)
  return c
