"""The two transfer protocols of the paper's appendix A.1 / A.8, shared by
configs/ucf101.py and configs/hmdb51.py (and the self-supervised evidence,
``avslowfast_jax/studies/configs/pretrain_synthetic.py``).

Variants of those files: ``[tiny_][INSTANTIATION_]PROTOCOL_splitN`` with
PROTOCOL ``linear`` or ``finetune`` and N the official split 1, 2 or 3, e.g.
``linear_split1`` or ``avslowfast_16x4_r50_finetune_split2``. The
instantiation (default ``avslowfast_8x8_r50``, Table 8's) must be the one the
checkpoint in ``train.init_from`` was pretrained with: a checkpoint of another
architecture is an error that lists what does not match. A model that no
variant names (the tiny one of ``avslowfast_jax/studies/configs/pretrain_synthetic.py``,
say) is given as ``--config.model.*`` / ``--config.data.*`` overrides: ``python -m
avslowfast_jax.tools.transfer --print_main_commands ...`` prints them, read from the
pretraining run's ``config.json``, as that tool's own runs take them.
"""

import re

from configs import common
from data_pipelines.errors import UserError

PROTOCOLS = ('linear', 'finetune')
SPLITS = (1, 2, 3)
DEFAULT_INSTANTIATION = 'avslowfast_8x8_r50'
_VARIANT = re.compile(r'^(tiny_)?(?:(.+)_)?(linear|finetune)_split([123])$')


def variants() -> tuple:
  """The variant names every transfer config file lists."""
  return tuple(f'{prefix}{inst}{protocol}_split{s}' for prefix in ('', 'tiny_')
               for inst in ('', 'avslowfast_4x16_r50_', 'avslowfast_16x4_r50_')
               for protocol in PROTOCOLS for s in SPLITS)


def parse_variant(variant: str):
  """``(tiny, instantiation, protocol, split)`` of a transfer variant name."""
  match = _VARIANT.match(variant)
  if not match:
    raise UserError(f'unknown transfer variant {variant!r}: expected '
                    '[tiny_][INSTANTIATION_]PROTOCOL_splitN with PROTOCOL linear or finetune '
                    'and N 1, 2 or 3, e.g. linear_split1, avslowfast_16x4_r50_finetune_split2')
  tiny, inst, protocol, split = match.groups()
  return bool(tiny), inst or DEFAULT_INSTANTIATION, protocol, int(split)


def set_protocol(c, protocol: str, finetune_steps: int, finetune_lr: float):
  """Linear probe (frozen backbone, fc only) or fine-tuning of all layers; both start
  from ``train.init_from`` with every backbone array required (``init_strict``)."""
  if protocol not in PROTOCOLS:
    raise UserError(f'unknown transfer protocol {protocol!r}: expected one of {PROTOCOLS}')
  c.task = 'classification'
  c.avs.enabled = False  # the pretext losses are not part of transfer
  c.train.init_skip = ('head',)
  c.train.init_strict = True
  c.train.schedule = 'cosine'
  c.train.warmup_steps = 0
  c.train.warmup_epochs = 0.0
  if protocol == 'linear':
    # Appendix A.8: 320k iterations, lr 0.01, half-period cosine, batch 64.
    c.train.linear_probe = True
    c.train.drop_pathway_prob = (0.0,)
    c.train.batch_size = 64
    c.train.reference_batch_size = 64
    c.train.base_lr = 0.01
    c.train.total_steps = 320_000
    c.train.eval_every_steps = 20_000
  else:
    # Appendix A.8: batch 16, half-period cosine; UCF101 80k it. at 0.005, HMDB51 30k at 0.01.
    c.train.batch_size = 16
    c.train.reference_batch_size = 16
    c.train.base_lr = finetune_lr
    c.train.total_steps = finetune_steps
    c.train.eval_every_steps = 5_000
  c.train.checkpoint_every_steps = 5_000
  return c


def transfer_config(dataset: str, num_classes: int, variant: str, finetune_steps: int,
                    finetune_lr: float):
  """The config of ``variant`` (see the module docstring) for ``dataset``."""
  tiny, inst, protocol, split = parse_variant(variant)
  c = common.base_config()
  common.set_instantiation(c, inst)
  if tiny:
    common.tiny_model(c)
  c.data.name = dataset
  # A folder prepared per official split: prepare --dataset DATASET --fold N.
  c.data.data_dir = ''
  c.data.train_split = 'train'
  c.data.eval_split = 'test'
  c.model.num_classes = num_classes
  set_protocol(c, protocol, finetune_steps, finetune_lr)
  return c
