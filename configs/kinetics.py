r"""Kinetics-400 from scratch (paper Table 2, appendix A).

Variants: ``{avslowfast,slowfast,audio}_{4x16_r50,8x8_r50,8x8_r101}``, the
R101 + Non-local models ``_8x8_r101_nl`` and ``_16x8_r101_nl`` (the Charades
and AVA models start from these), with a ``tiny_`` prefix for the
few-thousand-parameter model used in tests, e.g.

  python -m avslowfast_jax.main --config configs/kinetics.py:avslowfast_4x16_r50 \
      --workdir /tmp/k400 --config.data.data_dir=/data/k400_shards

The paper's global batch is 1024 at lr 1.6; ``train.batch_size`` is the global
batch and the lr follows it linearly from ``train.reference_batch_size`` (64,
lr 0.1), so ``--config.train.batch_size=1024`` reproduces the paper. R101
models train with scale jitter [256, 340] (appendix A). Models with Non-local
blocks start from their counterparts trained without them (appendix A), the same
variant with its Non-local stages removed:

  python -m avslowfast_jax.main --config configs/kinetics.py:avslowfast_16x8_r101_nl \
      --workdir /tmp/k400_16x8_r101 --config.data.data_dir=/data/k400_shards \
      --config.model.nonlocal_stages="()"
  python -m avslowfast_jax.main --config configs/kinetics.py:avslowfast_16x8_r101_nl \
      --workdir /tmp/k400_nl --config.data.data_dir=/data/k400_shards \
      --config.train.init_from=/tmp/k400_16x8_r101

Ablations (Tables 5 and 6, on 4x16 R50) are overrides of ``avslowfast_4x16_r50``:

  Table 5a, fusion:        --config.model.fusion=a_fs | a_f_s | av_nonlocal
  Table 5b, audio width:   --config.model.beta_a=0.125 | 0.25 | 0.5 | 1.0
  Table 5c, DropPathway:   --config.train.drop_pathway_prob=0.0 | 0.2 | 0.5 | 0.8
  Table 5d, AVS junctions: --config.avs.junctions='()' (no AVS) | "('pool5',)" |
                           "('res4','pool5')" | "('res3','res4','pool5')" (default)
                           (or --config.avs.enabled=False)
  Table 6, lateral stages: --config.model.audio_lateral_stages="('res4',)" |
                           "('res3','res4')" (default) | "('res2','res3','res4')"
                           with --config.model.audio_pool5=False for "no pool5"
  DropPathway variant:     --config.model.drop_pathway_mode=laterals (zero laterals only)
"""

from configs import common

VARIANTS = tuple(f'{prefix}{arch}_{inst}' for prefix in ('', 'tiny_')
                 for arch in ('avslowfast', 'slowfast', 'audio')
                 for inst in ('4x16_r50', '8x8_r50', '8x8_r101', '8x8_r101_nl',
                              '16x8_r101_nl'))


def get_config(variant: str = 'avslowfast_4x16_r50'):
  c = common.base_config()
  tiny, variant = common.split_tiny(variant)
  common.set_instantiation(c, variant)
  c.data.name = 'kinetics'
  c.model.num_classes = 400
  # Paper appendix A: 256 epochs for T <= 4, 196 for T > 4; lr 1.6 at batch
  # 1024 (= 0.1 at 64) with linear warm-up from 0.01.
  c.train.num_epochs = 256.0 if c.data.num_frames // c.model.alpha_f <= 4 else 196.0
  if tiny:
    common.tiny_model(c)
  return c
