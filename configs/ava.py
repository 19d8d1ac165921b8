r"""AVA spatio-temporal action detection, fine-tuned from Kinetics-400 (paper Table 7, A.7).

Variants: ``slowfast_4x16_r50``, ``avslowfast_4x16_r50``, ``slowfast_8x8_r101_nl``,
``avslowfast_8x8_r101_nl`` (with a ``tiny_`` prefix: the few-thousand-parameter
model of the tests), e.g.

  python -m data_pipelines.prepare --dataset ava --output_dir /data/ava_shards ...  # docs/ava.md
  python -m avslowfast_jax.main --config configs/ava.py:avslowfast_4x16_r50 \
      --workdir /tmp/ava --config.data.data_dir=/data/ava_shards \
      --config.train.init_from=/tmp/k400_4x16_r50
  python -m avslowfast_jax.main --config configs/ava.py:avslowfast_4x16_r50 \
      --workdir /tmp/ava --config.data.data_dir=/data/ava_shards --mode eval

Recipe (paper appendix A.7): initialise from the Kinetics model of the same
instantiation (``train.init_from``; the head is new), 52k iterations at lr 0.4
for a global batch of 256 (16 clips on each of 16 machines); the lr follows
``train.batch_size`` linearly from that reference. The paper gives no
schedule beyond this; the shape follows PySlowFast's AVA configs
(``configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml``: linear warm-up over the first
quarter from 1/800 of the lr, x0.1 at half and at three quarters, weight
decay 1e-7, none on BatchNorm), stretched over the 52k iterations.

Model (PySlowFast's AVA configs): res5 with spatial stride 1 and dilation 2
(``RESNET.SPATIAL_STRIDES``/``SPATIAL_DILATIONS``), so res5 is at 1/16 of the
input; the ``ava`` task's head pools every box with RoIAlign (7x7, aligned,
adaptive sampling) and classifies 80 actions with per-class sigmoids. Audio
reaches a box's classifier through the laterals and the pooled audio feature
appended to the box's feature (``model.audio_pool5``; ``=False`` for
laterals only). Training uses the ground-truth boxes and the detected boxes
scoring at least 0.8 of keyframes 902-1798, as PySlowFast's AVA configs do
(``data.ava.train_use_detected_boxes=False`` for ground-truth boxes only);
evaluation the detected person boxes scored at least
``detection_score_threshold`` (0.8), on the whole frame with short side 256 at
its own size (``data.ava.eval_frames``; export and predict pad it to
``data.ava.test_canvas``).

GFLOPs at the paper's 256x320 view (Table 7 reports 65.7, 67.1, 184, 210):

  python -m avslowfast_jax.tools.model_stats --config configs/ava.py:avslowfast_4x16_r50 \
      --view 256,320
"""

import ml_collections

from configs import common
from data_pipelines.errors import UserError

VARIANTS = tuple(f'{prefix}{arch}_{inst}' for prefix in ('', 'tiny_')
                 for arch in ('avslowfast', 'slowfast') for inst in ('4x16_r50', '8x8_r101_nl'))

# Global batch and lr of the paper's recipe (appendix A.7).
REFERENCE_BATCH = 256
BASE_LR = 0.4
TOTAL_STEPS = 52000


def get_config(variant: str = 'avslowfast_4x16_r50'):
  c = common.base_config()
  tiny, name = common.split_tiny(variant)
  if variant not in VARIANTS:
    raise UserError(f'configs/ava.py has no variant {variant!r}; expected one of '
                           f'{", ".join(VARIANTS)}')
  common.set_instantiation(c, name)
  c.task = 'ava'
  c.data.name = 'ava'
  c.model.num_classes = 80
  c.model.res5_spatial_stride = 1
  c.model.res5_dilation = 2
  c.model.dropout_rate = 0.5
  if name == 'slowfast_8x8_r101_nl':
    # PySlowFast's SlowFast R101+NL for AVA (configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml)
    # gives the temporal kernel to the first 3, 4, 6, 3 blocks of res2..res5 only, as R50
    # does (RESNET.NUM_BLOCK_TEMP_KERNEL); the AVSlowFast R101 model inflates every block.
    c.model.temporal_kernel_blocks = (3, 4, 6, 3)

  a = c.data.ava = ml_collections.ConfigDict()
  a.max_boxes = 16  # boxes per clip (static); more are dropped and counted by prepare
  a.detection_score_threshold = 0.8  # detected boxes kept at evaluation
  # Training boxes: the ground-truth boxes plus the detected boxes scoring >= 0.8 (with
  # the actions of the ground-truth box they overlap at IoU >= 0.5, none otherwise), as
  # PySlowFast's AVA configs train (configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml:
  # TRAIN_PREDICT_BOX_LISTS = the ground truth and the detections, DETECTION_SCORE_THRESH
  # 0.8); the paper's AVA models come from that code. False: ground-truth boxes only.
  a.train_use_detected_boxes = True
  a.train_detection_score_threshold = 0.8
  # Keyframes trained on (inclusive): PySlowFast's AVA_VALID_FRAMES (slowfast/datasets/
  # ava_helper.py), the seconds whose clips lie inside the 15-minute cut; () = all.
  a.train_keyframe_range = (902, 1798)
  # Evaluation frames: short side test_short_side (256), the whole frame at its own size,
  # batched by size, as PySlowFast evaluates ('canvas': padded at the bottom/right to
  # test_canvas, one static shape; the padding moves the scores, docs/ava.md).
  a.eval_frames = 'own'
  # The static (height, width) of export / predict, and of evaluation with 'canvas'
  # (16:9 frames are 256 x 455).
  a.test_canvas = (256, 464)
  c.data.num_test_clips = 1
  c.data.num_test_crops = 1

  t = c.train
  t.batch_size = REFERENCE_BATCH
  t.reference_batch_size = REFERENCE_BATCH
  t.base_lr = BASE_LR
  t.total_steps = TOTAL_STEPS
  t.schedule = 'steps'
  t.warmup_steps = TOTAL_STEPS // 4
  t.warmup_start_lr = BASE_LR / 800
  t.lr_decay_steps = (TOTAL_STEPS // 2, TOTAL_STEPS * 3 // 4)
  t.weight_decay = 1e-7
  t.best_metric = 'mAP'
  t.eval_every_steps = 4000
  t.checkpoint_every_steps = 2000
  t.init_skip = ('head',)
  c.eval.batch_size = 16
  if tiny:
    common.tiny_model(c)
  return c


def synthetic_config(data_dir: str, num_classes: int, steps: int, audio_pool5: bool = True):
  """The tiny detection model and short AdamW schedule for the built-in detection data
  (``python -m data_pipelines.synthetic --detection``): the end-to-end test and
  benchmarks/ava_audio_design.py both train this."""
  c = get_config('tiny_avslowfast_4x16_r50')
  c.data.data_dir = data_dir
  c.model.num_classes = num_classes
  c.model.audio_pool5 = audio_pool5
  c.data.num_frames, c.model.alpha_f, c.data.sampling_rate = 8, 4, 4
  c.data.audio.num_frames = 32
  c.data.train_crop_size, c.data.train_jitter_scales, c.data.test_short_side = 48, (48, 56), 48
  c.data.ava.test_canvas, c.data.ava.max_boxes = (48, 64), 4
  # The built-in videos are seconds 900-903 (keyframes from 901), and the figures of
  # docs/ava.md were trained on ground-truth boxes only.
  c.data.ava.train_keyframe_range = ()
  c.data.ava.train_use_detected_boxes = False
  c.model.bn_group_size = 2
  c.avs.enabled = c.data.avs_negatives = False
  c.train.drop_pathway_prob = (0.0,)
  c.train.batch_size = c.eval.batch_size = 8
  c.train.optimizer, c.train.base_lr, c.train.reference_batch_size = 'adamw', 0.01, 8
  c.train.weight_decay, c.train.schedule = 1e-4, 'cosine'
  c.train.total_steps, c.train.warmup_steps, c.train.warmup_start_lr = steps, 3, 0.001
  c.train.eval_every_steps, c.train.checkpoint_every_steps = -1, steps
  c.train.log_every_steps = steps
  return c
