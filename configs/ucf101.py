r"""UCF101 transfer from a pretrained checkpoint (paper Tables 8, A.1, A.2).

Prepare each official split into its own folder (classInd.txt and
trainlist0N.txt / testlist0N.txt of UCF101's split archive), e.g. split 1:

  python -m data_pipelines.prepare --dataset ucf101 --annotations /data/ucfTrainTestlist \
      --video_dir /data/UCF-101 --fold 1 --output_dir /data/ucf101_split1

Then one protocol on one split (the variants: configs/transfer_common.py):

  python -m avslowfast_jax.main --config configs/ucf101.py:linear_split1 \
      --workdir /tmp/ucf_linear_1 --config.data.data_dir=/data/ucf101_split1 \
      --config.train.init_from=/tmp/ssl_8x8

(the variant's model must be the pretraining run's: for another one, such as the
tiny model of the synthetic studies, ``python -m avslowfast_jax.tools.transfer ...
--print_main_commands`` prints this command with the run's model as overrides),
or all three splits and their mean in one command (the model taken from the run):

  python -m avslowfast_jax.tools.transfer --pretrained /tmp/ssl_8x8 --dataset ucf101 \
      --protocol linear --data_dir '/data/ucf101_split{split}' --workdir /tmp/ucf_linear

Linear probe: the backbone frozen, only the final linear layer trained, 320k
iterations at batch 64, lr 0.01, half-period cosine. Fine-tuning all layers:
80k iterations at batch 16, lr 0.005, half-period cosine (appendix A.8).
"""

from configs import transfer_common

NUM_CLASSES = 101
VARIANTS = transfer_common.variants()


def get_config(variant: str = 'linear_split1'):
  return transfer_common.transfer_config('ucf101', NUM_CLASSES, variant, finetune_steps=80_000,
                                         finetune_lr=0.005)
