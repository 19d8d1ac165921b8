r"""Label-free pretraining of the quickstart's tiny AVSlowFast on the built-in synthetic data.

  python -m avslowfast_jax.studies.ssl_evidence --workdir /tmp/ssl_evidence --data_only
  python -m avslowfast_jax.main \
      --config avslowfast_jax/studies/configs/pretrain_synthetic.py:pretrain \
      --workdir /tmp/ssl_synth --config.data.data_dir=/tmp/ssl_evidence/shards

(the first command makes the evidence's data: upright scenes, where rotation
prediction has something to learn; ``data_pipelines/synthetic.py``).

Variants:

- ``pretrain``: AVS + rotation (``configs/pretrain.py``'s task and pretexts) on
  the quickstart's model width, BatchNorm groups and AdamW schedule, with the
  paper's constant DropPathway rate P_d = 0.8 and its curriculum (1/4 hard
  negatives from half-way), on clips small enough that a few seeds of every
  pretext fit a CPU: 32x32 crops of frames prepared at a short side of 40, 8
  Fast frames at stride 8 (the 64-frame window), 32 frames of 40 log-mel bins,
  32 clips a step.
- ``linear_probe``: the paper's linear probe (``configs/transfer_common.py``)
  of such a backbone on the synthetic labels, with SGD as the paper's.

``python -m avslowfast_jax.studies.ssl_evidence`` runs both (its probe
z-scores the cached features first: ``ssl_evidence.probe_backbone``).
"""

from avslowfast_jax.studies.configs import quickstart
from configs import pretrain, transfer_common
from data_pipelines.errors import UserError

VARIANTS = ('pretrain', 'linear_probe')


def get_config(variant: str = 'pretrain'):
  if variant not in VARIANTS:
    raise UserError(f'unknown variant {variant!r}: expected one of {", ".join(VARIANTS)}')
  c = quickstart.get_config('avslowfast')
  c.train.drop_pathway_prob = (0.8, 0.8)
  c.eval.scale_audio_laterals = False
  c.data.train_crop_size = 32
  c.data.train_jitter_scales = (40, 48)
  c.data.test_short_side = 40
  c.data.test_crop_size = 32
  c.data.num_frames = 8
  c.data.sampling_rate = 8
  c.data.audio.num_frames = 32
  c.data.num_test_clips = 2
  c.data.num_test_crops = 1
  pretrain.set_pretraining(c)
  c.avs.hard_start = 0.5
  c.avs.hard_fraction = 0.25
  # 32 clips a step: rotation prediction on the upright synthetic scenes starts to learn
  # after some 7000 clips, at 16 or at 32 a step alike, and 32 clips cost less per clip.
  c.train.batch_size = 32
  if variant == 'linear_probe':
    transfer_common.set_protocol(c, 'linear', finetune_steps=0, finetune_lr=0.0)
    c.train.optimizer = 'sgd'
    c.train.eval_every_steps = -1
    c.data.eval_split = 'validation'
  return c
