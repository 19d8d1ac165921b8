"""Shared pieces of every experiment config.

Each experiment family (``configs/kinetics.py`` etc.) calls :func:`base_config`
and then :func:`set_instantiation` to pick one of the paper's instantiations.
The variant string after the colon on the command line selects it, e.g.
``--config configs/kinetics.py:avslowfast_4x16_r50``.
"""

from __future__ import annotations

import re

import ml_collections

from avslowfast_jax.models.config import STAGE_BLOCKS, ModelConfig
from data_pipelines.errors import UserError

# Mean and standard deviation of the log-mel front end's values over Kinetics
# (the AVSlowFast authors' audio-visual SlowFast code normalises with these).
AUDIO_LOGMEL_MEAN = -7.03
AUDIO_LOGMEL_STD = 4.66


def base_config() -> ml_collections.ConfigDict:
  """Every field that any part of the code reads, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Which task the model is trained for (avslowfast_jax/tasks): its head, loss,
  # metrics and evaluation. 'classification' (softmax) | 'multilabel' (sigmoid,
  # mAP) | 'verb_noun' (EPIC-Kitchens).
  c.task = 'classification'

  # ---------------------------------------------------------------- model
  # Every field, its meaning and its default: avslowfast_jax/models/config.py.
  c.model = ml_collections.ConfigDict(ModelConfig().to_dict())

  # ----------------------------------------------------------------- data
  d = c.data = ml_collections.ConfigDict()
  d.name = 'kinetics'
  d.data_dir = ''  # folder of prepared shards (data_pipelines.prepare output)
  d.train_split = 'train'
  d.eval_split = 'validation'
  d.fps = 30  # frame rate of the prepared frames
  d.num_frames = 32  # Fast frames per clip; Slow gets num_frames // alpha_f
  d.sampling_rate = 2  # frame stride of the Fast pathway
  d.train_jitter_scales = (256, 320)
  d.train_crop_size = 224
  d.test_short_side = 256
  d.test_crop_size = 256
  d.num_test_clips = 10
  d.num_test_crops = 3
  d.random_flip = True
  d.mean = (0.45, 0.45, 0.45)
  d.std = (0.225, 0.225, 0.225)
  d.shuffle_buffer = 256
  d.avs_negatives = True  # emit 'audio_shifted' for hard AVS negatives
  d.hard_negative_min_shift_sec = 0.5
  d.num_parallel_calls = -1  # tf.data map parallelism; -1 = AUTOTUNE
  d.prefetch_batches = 2
  # Ship each training clip's decoded crop window (uint8) and audio samples; the train step
  # resizes, flips and normalises the frames and computes the log-mels
  # (avslowfast_jax/clip_finish.py), so the host CPUs mostly read and decode.
  # 'on' | 'off' | 'auto': on when jax runs on an accelerator, off on CPU (where it would
  # only move the work).
  d.finish_on_device = 'auto'
  # Heap-serve allocations below this many bytes (glibc; 0 = leave malloc alone): whole
  # records (~10 MB for 10 s: evaluation, shards without a frame index) and a clip's frame
  # buffers (avslowfast_jax.host_memory.serve_from_heap, applied by the entry points).
  d.malloc_mmap_threshold = 32 << 20
  a = d.audio = ml_collections.ConfigDict()
  a.sample_rate = 16000
  a.n_fft = 512  # 32 ms window
  a.hop_length = 256  # 16 ms hop
  a.num_mels = 80
  a.num_frames = 128  # log-mel frames per clip
  a.log_offset = 1e-8
  a.mean = AUDIO_LOGMEL_MEAN
  a.std = AUDIO_LOGMEL_STD

  # ---------------------------------------------------------------- train
  t = c.train = ml_collections.ConfigDict()
  t.batch_size = 64  # global batch (all devices of all hosts)
  t.num_epochs = 196.0
  t.total_steps = 0  # > 0 overrides num_epochs
  t.num_train_examples = 0  # 0 = read from the dataset's metadata
  t.base_lr = 0.1
  t.reference_batch_size = 64  # lr scales linearly: base_lr * batch / reference
  t.warmup_epochs = 34.0
  t.warmup_steps = 0  # > 0 overrides warmup_epochs
  t.warmup_start_lr = 0.01
  t.schedule = 'cosine'  # 'cosine' | 'steps'
  t.lr_decay_epochs = ()  # for 'steps': epochs at which lr is divided by 10
  t.lr_decay_steps = ()  # for 'steps': the same in steps (overrides lr_decay_epochs)
  t.optimizer = 'sgd'  # 'sgd' (the paper's) | 'adamw' (short schedules from scratch)
  t.momentum = 0.9  # sgd only
  t.nesterov = True  # sgd only
  t.weight_decay = 1e-4
  t.grad_clip_norm = 0.0  # 0 = off
  t.label_smoothing = 0.0
  # DropPathway's rate P_d (paper section 3.4, Table 5c): (P_d,) for a constant rate, or
  # (start, end) for a rate linear from the first step to the last
  # (avslowfast_jax/drop_pathway.py). On the command line: =0.8 or "(1.0,0.4)".
  t.drop_pathway_prob = (0.8,)
  t.log_every_steps = 20
  t.eval_every_epochs = 10.0
  t.eval_every_steps = 0  # > 0 overrides eval_every_epochs; < 0 = no eval during training
  t.checkpoint_every_steps = 1000
  t.keep_checkpoints = 3
  t.async_checkpoints = True  # orbax saves in the background while training goes on
  t.checkpoint_dir = ''  # checkpoints/ and best/ go here ('' = the workdir); local or gs://
  t.best_metric = 'top1'
  t.init_from = ''  # checkpoint (or export) to start from when the workdir has none
  t.init_skip = ('head',)  # parameter path prefixes not taken from init_from
  # Every parameter outside init_skip must come from init_from with its shape
  # (else an error lists what does not match); False leaves the missing ones
  # at their initial values (e.g. Non-local blocks added to a model without).
  t.init_strict = False
  # Linear probe: the backbone frozen (inference mode, running BN statistics,
  # no gradient); only the head's parameters are trained.
  t.linear_probe = False
  t.fsdp = False  # shard params and optimizer state over the data axis

  # ------------------------------------------------------------------ avs
  s = c.avs = ml_collections.ConfigDict()
  s.enabled = True
  s.junctions = ('res3', 'res4', 'pool5')
  s.margin = 0.99
  s.min_audio_var = 0.01
  # Pairs whose in-sync and out-of-sync log-mels have a cosine similarity at least this high
  # are left out (the authors' AVS_DUPLICATE_THRESH).
  s.duplicate_threshold = 0.99
  s.hard_start = 0.5  # fraction of training after which hard negatives appear
  s.hard_fraction = 0.25
  s.weight = 1.0

  # ---------------------------------------------------------------- pretext
  # Label-free pretraining (task 'pretrain'): rotation prediction of the visual
  # clip; the AVS pretext is the avs section above.
  p = c.pretext = ml_collections.ConfigDict()
  p.rotation = True
  p.rotation_weight = 1.0

  # ------------------------------------------------------------------- eval
  e = c.eval = ml_collections.ConfigDict()
  e.batch_size = 16  # views per global batch
  e.aggregate = 'mean'  # 'mean' of softmax, or 'max' (Charades)
  e.checkpoint = 'latest'  # 'latest' | 'best' | a step number | a path
  # Views per video during training (cheaper than the final 10 x 3 test).
  e.train_num_clips = 1
  e.train_num_crops = 1
  e.max_batches = 0  # > 0: stop after this many batches (smoke tests)
  # Scale the audio laterals outside training by 1 - P_d of the last training step (the
  # test-time rule of dropout; avslowfast_jax/drop_pathway.py). Not in the paper: off.
  e.scale_audio_laterals = False
  return c


_INSTANTIATION = re.compile(r'^(avslowfast|slowfast|audio)_(\d+)x(\d+)_r(\d+)(_nl)?$')


def set_instantiation(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Sets model and sampling fields from a name like ``avslowfast_4x16_r50``.

  ``T x tau`` follows the SlowFast papers: Slow sees T frames at stride tau of a
  T*tau-frame window; Fast sees alpha_f*T frames at stride tau/alpha_f.
  """
  match = _INSTANTIATION.match(variant)
  arch, t, tau, depth, nonlocal_ = match.groups() if match else (None, '0', '0', '0', None)
  t, tau, depth = int(t), int(tau), int(depth)
  window = t * tau
  fast_frames = 32 if window == 64 else window // 2
  if not match or depth not in STAGE_BLOCKS or t < 1 or fast_frames % t or fast_frames <= t:
    raise UserError(
        f'unknown variant {variant!r}: expected [tiny_]ARCH_TxTAU_rDEPTH[_nl] with ARCH one of '
        f'avslowfast, slowfast, audio; DEPTH one of {sorted(STAGE_BLOCKS)}; T x TAU a Slow '
        'clip whose Fast pathway sees more frames (e.g. 4x16, 8x8, 16x8); for example '
        'avslowfast_4x16_r50, slowfast_8x8_r101_nl, tiny_avslowfast_4x16_r50')
  alpha_f = fast_frames // t
  c.model.arch = arch
  c.model.depth = depth
  c.model.alpha_f = alpha_f
  c.data.num_frames = fast_frames
  c.data.sampling_rate = window // fast_frames
  # 2 s of audio per 64-frame window (128 log-mel frames), proportionally more
  # for longer windows.
  c.data.audio.num_frames = 128 * window // 64
  if depth == 101:
    # Paper appendix A: "a scale jittering range of [256, 340] pixels for R101".
    c.data.train_jitter_scales = (256, 340)
  if nonlocal_:
    c.model.nonlocal_stages = ('res4',)
    # PySlowFast's R101+NL: Non-local after blocks 6, 13 and 20 of res4.
    c.model.nonlocal_every = 7 if depth == 101 else 2
  if arch != 'avslowfast':
    c.avs.enabled = False
  if arch == 'slowfast':
    c.train.drop_pathway_prob = (0.0,)
  return c


def split_tiny(variant: str):
  """``'tiny_avslowfast_4x16_r50'`` -> ``(True, 'avslowfast_4x16_r50')``.

  Every family accepts a ``tiny_`` prefix that shrinks the model (tests, CPU).
  """
  if variant.startswith('tiny_'):
    return True, variant[len('tiny_'):]
  return False, variant


def tiny_model(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks the model to a few thousand parameters for tests and the quickstart."""
  c.model.width = 8
  c.model.stage_blocks = (1, 1, 1, 1)
  c.model.audio_lateral_hidden_channels = 8
  c.model.avs_embed_dim = 16
  c.model.bn_group_size = 2
  return c
