r"""EPIC-Kitchens-55 action recognition: fine-tune 8x8 R101 from Kinetics (paper Table 3).

  python -m avslowfast_jax.main --config configs/epic_kitchens.py:avslowfast_8x8_r101_verb \
      --workdir /ckpt/epic_verb --config.data.data_dir=/data/epic_shards \
      --config.train.init_from=/ckpt/k400_8x8_r101
  python -m avslowfast_jax.main --config configs/epic_kitchens.py:avslowfast_8x8_r101_noun \
      --workdir /ckpt/epic_noun --config.data.data_dir=/data/epic_shards \
      --config.train.init_from=/ckpt/k400_8x8_r101
  python -m avslowfast_jax.tools.epic --verb /ckpt/epic_verb --noun /ckpt/epic_noun

The paper (appendix A.5) trains two models, one for verbs and one for nouns,
each fine-tuned from the Kinetics AVSlowFast 8x8 R101 (no Non-local) with
every BatchNorm frozen (affine), batch 32, a step decay by 10 at 2/3 and 5/6
of training, and tests with a single centre crop:

| variant suffix | task | classes | lr | iterations | decays at |
|---|---|---|---|---|---|
| ``_verb`` | ``classification`` on the verb | 125 | 0.01 | 24k | 16k, 20k |
| ``_noun`` | ``noun`` (classification on the noun) | 352 | 0.0006 | 30k | 20k, 25k |
| none | ``verb_noun``: one network, both heads | 125 + 352 | 0.01 | 24k | 16k, 20k |

What the paper leaves out follows the EPIC-Kitchens team's PySlowFast fork
(epic-kitchens/epic-kitchens-slowfast, ``configs/EPIC-KITCHENS/SLOWFAST_8x8_R50.yaml``,
a SlowFast fine-tuned on EPIC-KITCHENS-100 with the same batch 32, lr 0.01 and
decays at 2/3 and 5/6; PySlowFast itself has no EPIC config): SGD momentum 0.9, weight
decay 1e-4 (none on BatchNorm), dropout 0.5, a linear warm-up over the first
epoch from a tenth of the base lr (that file: 0.001 to 0.01), training crops
224 from a short side jittered in [256, 320] (here [256, 340], the paper's
R101 jitter, appendix A.4) and test crops 256. "A single centre crop" is one
view per segment: the centre 64-frame window (``num_test_clips=1``) and its
centre 256x256 crop (``num_test_crops=1``).
``tools/epic.py`` combines the two models' per-segment scores into action
accuracy and writes the test-server submission file.
"""

from configs import common

VARIANTS = ('avslowfast_8x8_r101_verb', 'avslowfast_8x8_r101_noun', 'slowfast_8x8_r101_verb',
            'slowfast_8x8_r101_noun', 'avslowfast_8x8_r101', 'tiny_avslowfast_8x8_r101_verb',
            'tiny_avslowfast_8x8_r101_noun')

NUM_VERBS = 125  # EPIC-Kitchens-55 verb classes
NUM_NOUNS = 352  # noun classes

# Per model (appendix A.5): base lr at batch 32 and training iterations.
_RECIPES = {'verb': (0.01, 24000), 'noun': (0.0006, 30000), 'both': (0.01, 24000)}


def get_config(variant: str = 'avslowfast_8x8_r101'):
  c = common.base_config()
  tiny, variant = common.split_tiny(variant)
  head = 'both'
  for suffix in ('verb', 'noun'):
    if variant.endswith('_' + suffix):
      head, variant = suffix, variant[:-len(suffix) - 1]
  common.set_instantiation(c, variant)
  c.data.name = 'epic_kitchens'
  c.data.eval_split = 'validation'
  c.data.num_test_clips = 1
  c.data.num_test_crops = 1
  if head == 'verb':
    c.task = 'classification'
    c.model.num_classes = NUM_VERBS
  elif head == 'noun':
    c.task = 'noun'
    c.model.num_classes = NUM_NOUNS
  else:
    c.task = 'verb_noun'
    c.model.num_classes = NUM_VERBS
    c.model.num_nouns = NUM_NOUNS
  c.model.freeze_bn = True
  base_lr, steps = _RECIPES[head]
  t = c.train
  t.batch_size = 32
  t.reference_batch_size = 32  # lr given at this batch
  t.base_lr = base_lr
  t.total_steps = steps
  t.schedule = 'steps'
  t.lr_decay_steps = (steps * 2 // 3, steps * 5 // 6)
  t.warmup_epochs = 1.0
  t.warmup_start_lr = base_lr / 10
  t.weight_decay = 1e-4
  t.init_skip = ('head',)
  t.best_metric = {'verb': 'top1', 'noun': 'top1', 'both': 'action_top1'}[head]
  t.eval_every_steps = 2000
  t.checkpoint_every_steps = 2000
  if tiny:
    common.tiny_model(c)
  return c
