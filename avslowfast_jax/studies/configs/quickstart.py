r"""The quickstart's tiny models on the built-in synthetic dataset (CPU).

  python -m data_pipelines.synthetic --output_dir /tmp/synth --sync_events ringing
  python -m data_pipelines.prepare --output_dir /tmp/synth_shards \
      --manifest /tmp/synth/manifest.csv --short_side 66
  python -m avslowfast_jax.main --config avslowfast_jax/studies/configs/quickstart.py:avslowfast \
      --workdir /tmp/qs_av --config.data.data_dir=/tmp/synth_shards

Variants: ``avslowfast`` (default), ``slowfast`` (visual only), ``audio``
(audio only). The synthetic classes include audio-only and sync-only ones,
so only the audiovisual model can separate all of them: a visual-only model
can expect at most 62.5% top-1 (the 3 visual classes right, then a guess
among the 3 audio classes and one between the 2 sync ones), an audio-only
model likewise.

The schedule is a few hundred steps from scratch on a CPU, far too short for
the paper's SGD recipe: these models train with AdamW and BatchNorm over the
whole batch. The results page (``avslowfast_jax/studies/results.md``) gives
what they reach.
"""

from configs import common
from data_pipelines.errors import UserError

VARIANTS = ('avslowfast', 'slowfast', 'audio')


def get_config(variant: str = 'avslowfast'):
  if variant not in VARIANTS:
    raise UserError(f'unknown quickstart variant {variant!r}: expected one of {", ".join(VARIANTS)}')
  c = common.base_config()
  common.set_instantiation(c, f'{variant}_4x16_r50')
  common.tiny_model(c)
  c.data.name = 'synthetic'
  c.model.num_classes = 8  # data_pipelines.synthetic.CLASS_NAMES
  # 48x48 crops of frames resized to a short side of 54-66, 16 Fast frames at
  # stride 4 (the 64-frame window of 4x16), 64 frames of 40 log-mel bins.
  c.data.num_frames = 16
  c.data.sampling_rate = 4
  c.model.alpha_f = 4
  c.data.audio.num_frames = 64
  c.data.audio.num_mels = 40
  c.data.train_jitter_scales = (54, 66)
  c.data.train_crop_size = 48
  c.data.test_short_side = 54
  c.data.test_crop_size = 48
  c.data.num_test_clips = 2
  c.data.num_test_crops = 1
  # BatchNorm over the whole batch: groups of a few clips make the statistics of
  # so small a model too noisy for the visual pathways to learn quickly.
  c.model.bn_group_size = 16
  c.model.dropout_rate = 0.2
  # Twice the tests' tiny width: at width 8 the Fast pathway has one channel.
  c.model.width = 16
  c.model.audio_lateral_hidden_channels = 16
  # DropPathway from 1.0 to 0.4: the visual pathways learn alone first, before the
  # audio pathway, which learns far faster, can fit the training videos by their
  # soundtracks (the overfitting that section 3.4 of the paper describes).
  c.train.drop_pathway_prob = (1.0, 0.4)
  # Evaluate with the laterals at the share of the last steps that had them (not in
  # the paper; avslowfast_jax/drop_pathway.py).
  c.eval.scale_audio_laterals = True

  t = c.train
  t.batch_size = 16
  t.reference_batch_size = 16
  t.total_steps = 600
  # SGD at the paper's learning rates does not get going in a few hundred steps from
  # scratch; AdamW does.
  t.optimizer = 'adamw'
  t.base_lr = 2e-3
  t.warmup_steps = 30
  t.warmup_start_lr = 2e-4
  t.log_every_steps = 10
  t.eval_every_steps = 200
  t.checkpoint_every_steps = 100
  c.eval.batch_size = 16
  return c
