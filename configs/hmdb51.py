r"""HMDB51 transfer from a pretrained checkpoint (paper Tables 8, A.1, A.2).

Prepare each official split into its own folder (the per-class
``<class>_test_split<N>.txt`` files of HMDB51's split archive), e.g. split 1:

  python -m data_pipelines.prepare --dataset hmdb51 --annotations /data/hmdb51_splits \
      --video_dir /data/hmdb51 --fold 1 --output_dir /data/hmdb51_split1

Then one protocol on one split (the variants: configs/transfer_common.py):

  python -m avslowfast_jax.main --config configs/hmdb51.py:finetune_split1 \
      --workdir /tmp/hmdb_ft_1 --config.data.data_dir=/data/hmdb51_split1 \
      --config.train.init_from=/tmp/ssl_8x8

(the variant's model must be the pretraining run's: for another one, such as the
tiny model of the synthetic studies, ``python -m avslowfast_jax.tools.transfer ...
--print_main_commands`` prints this command with the run's model as overrides),
or all three splits and their mean in one command (the model taken from the run):

  python -m avslowfast_jax.tools.transfer --pretrained /tmp/ssl_8x8 --dataset hmdb51 \
      --protocol finetune --data_dir '/data/hmdb51_split{split}' --workdir /tmp/hmdb_ft

Linear probe: as for UCF101 (320k iterations, batch 64, lr 0.01, cosine).
Fine-tuning all layers: 30k iterations at batch 16, lr 0.01, half-period
cosine (appendix A.8).
"""

from configs import transfer_common

NUM_CLASSES = 51
VARIANTS = transfer_common.variants()


def get_config(variant: str = 'linear_split1'):
  return transfer_common.transfer_config('hmdb51', NUM_CLASSES, variant, finetune_steps=30_000,
                                         finetune_lr=0.01)
