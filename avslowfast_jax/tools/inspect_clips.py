r"""Writes what the model sees for a few clips, to check a pipeline by looking.

  python -m avslowfast_jax.tools.inspect_clips --data_dir D --config configs/kinetics.py:avslowfast_4x16_r50 \
      --split train --num_clips 8 --output clips.npz --png sheet.png

The npz holds the model inputs (``slow``, ``fast``, ``audio``), ``label``,
``video_id``, ``clip_start_sec``, ``clip_end_sec``, ``audio_mask`` and the
normalisation constants (``audio_mean``, ``audio_std``, ``frame_mean``,
``frame_std``). The PNG shows, per clip, Fast frames above its log-mel.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from avslowfast_jax import cli
from data_pipelines import errors, fs, input_pipeline


def collect_clips(config, data_dir: str, split: str, num_clips: int, seed: int = 0) -> dict:
  """The first ``num_clips`` clips of the train (augmented) or eval (views) pipeline + metadata.
  An audio-only model's clips are shown with the frames a visual model would get beside them."""
  if not input_pipeline.has_frames(config):
    config = config.copy_and_resolve_references()
    config.model.arch = 'avslowfast'
  if split == 'train':
    iterator = input_pipeline.create_train_iterator(
        config, data_dir, config.data.train_split, 1, seed=seed, process_index=0,
        process_count=1, with_metadata=True)
  else:
    iterator = input_pipeline.create_eval_iterator(
        config, data_dir, config.data.eval_split if split == 'eval' else split, 1,
        process_index=0, process_count=1, with_metadata=True)
  batches = []
  for batch in iterator:
    if 'valid' in batch and not batch['valid'][0]:
      break
    if 'audio_pcm' in batch:  # data.finish_on_device: finish the clip as the train step does
      from avslowfast_jax import clip_finish  # pylint: disable=g-import-not-at-top
      batch = {k: np.asarray(v) for k, v in clip_finish.finish_clips(config, batch).items()}
    batches.append(batch)
    if len(batches) == num_clips:
      break
  out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  out['video_id'] = np.array([v.decode() for v in out['video_id']])
  out['audio_mean'] = np.float32(config.data.audio.mean)
  out['audio_std'] = np.float32(config.data.audio.std)
  out['frame_mean'] = np.asarray(config.data.mean, np.float32)
  out['frame_std'] = np.asarray(config.data.std, np.float32)
  return out


def contact_sheet(clips: dict, path: str, frames_per_clip: int = 8) -> None:
  """Saves a PNG: for each clip a row of Fast frames above its (denormalised) log-mel."""
  # matplotlib is the optional [plots] extra: imported only to draw.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  num = len(clips['fast'])
  fig, axes = plt.subplots(2 * num, frames_per_clip, figsize=(2 * frames_per_clip, 3.6 * num),
                           squeeze=False, gridspec_kw={'height_ratios': [1, 0.8] * num})
  for i in range(num):
    fast = clips['fast'][i] * clips['frame_std'] + clips['frame_mean']
    picks = np.linspace(0, len(fast) - 1, frames_per_clip).round().astype(int)
    for j, k in enumerate(picks):
      ax = axes[2 * i, j]
      ax.imshow(np.clip(fast[k], 0, 1))
      ax.set_axis_off()
      if j:
        ax.set_title(f'frame {k}', fontsize=7)
    axes[2 * i, 0].set_title(f"{clips['video_id'][i]} label {clips['label'][i]} "
                             f"{clips['clip_start_sec'][i]:.2f}-{clips['clip_end_sec'][i]:.2f} s, "
                             'frame 0',
                             fontsize=7, loc='left')
    spec = clips['audio'][i, :, :, 0] * clips['audio_std'] + clips['audio_mean']
    gs = axes[2 * i + 1, 0].get_gridspec()
    for ax in axes[2 * i + 1]:
      ax.remove()
    ax = fig.add_subplot(gs[2 * i + 1, :])
    ax.imshow(spec.T, origin='lower', aspect='auto', cmap='magma')
    ax.set_ylabel('mel bin', fontsize=7)
    ax.set_xlabel('log-mel frame' + ('' if clips['audio_mask'][i] else ' (no audio track)'),
                  fontsize=7)
  fig.tight_layout()
  fs.save_figure(fig, path, dpi=80)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--config', required=True, help='configs/kinetics.py:avslowfast_4x16_r50')
  parser.add_argument('--split', default='train',
                      help='train (augmented clips) | test | eval | any split (eval views)')
  parser.add_argument('--num_clips', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', required=True, help='.npz file')
  parser.add_argument('--png', default=None, help='contact sheet (needs matplotlib)')
  args = parser.parse_args(argv)
  if args.num_clips < 1:
    raise errors.UserError(f'--num_clips {args.num_clips}: expected at least 1')
  config = cli.load_config_file(args.config)
  clips = collect_clips(config, args.data_dir, args.split, args.num_clips, args.seed)
  fs.save_npz(args.output, clips, compressed=True)
  print(f'wrote {len(clips["fast"])} clips to {args.output}', file=sys.stderr)
  if args.png:
    try:
      contact_sheet(clips, args.png)
      print(f'wrote {args.png}', file=sys.stderr)
    except ImportError:
      print('matplotlib is not installed: no contact sheet (pip install matplotlib)',
            file=sys.stderr)


if __name__ == '__main__':
  errors.run(main)
