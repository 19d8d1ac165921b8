"""GFLOPs of the paper's 4x16 R50 models (abstract trace, no compute)."""

import pytest

from avslowfast_jax.tools.model_stats import memory_report, model_stats, train_flops_per_clip
from configs import kinetics


@pytest.mark.parametrize('variant,paper,tolerance', [
    ('slowfast_4x16_r50', 36.1, 0.02), ('avslowfast_4x16_r50', 39.8, 0.05)])
def test_gflops_match_the_paper(variant, paper, tolerance):
  stats = model_stats(kinetics.get_config(variant))
  assert abs(stats['gflops'] - paper) <= tolerance * paper, stats
  split = stats['gflops_split']
  assert abs(sum(split.values()) - stats['gflops']) < 0.01
  assert split['slow'] > split['fast'] > 0
  assert ('audio' in split) == variant.startswith('avslowfast')


def test_audio_width_scales_audio_flops():
  """beta_a doubles the audio channels: about 4x the audio multiply-adds."""
  small = kinetics.get_config('avslowfast_4x16_r50')
  small.model.beta_a = 0.25
  base = model_stats(kinetics.get_config('avslowfast_4x16_r50'))['gflops_split']['audio']
  ratio = base / model_stats(small)['gflops_split']['audio']
  assert 3.5 < ratio < 4.5


def test_memory_mode_reports_the_compiled_train_step():
  # The Audio pathway alone at its tiny size: the quickest train step to compile.
  config = kinetics.get_config('tiny_avslowfast_8x8_r50')
  config.model.arch = 'audio'
  config.data.audio.num_frames = 32
  rows = memory_report(config, 2, dtypes=('bfloat16',), remats=('stages',))
  assert len(rows) == 1
  row = rows[0]
  assert row['backend'] == 'cpu' and row['dtype'] == 'bfloat16' and row['remat'] == 'stages'
  assert row['per_device_batch'] == 2
  sizes = row['bytes']
  assert set(sizes) == {'argument', 'output', 'temp', 'generated_code', 'alias', 'total'}
  # The arguments hold at least the fp32 parameters (state) and the batch.
  params = model_stats(config)['params']
  assert sizes['argument'] >= 4 * params + 4 * 2 * 32 * config.data.audio.num_mels
  assert sizes['temp'] > 0 and sizes['output'] > 0
  assert sizes['total'] == sizes['argument'] + sizes['output'] - sizes['alias'] + sizes['temp']


def test_train_flops_are_six_times_the_forward_multiply_adds():
  config = kinetics.get_config('slowfast_4x16_r50')
  config.data.train_crop_size = 160
  macs = model_stats(config, image_size=160)['gflops'] * 1e9
  assert train_flops_per_clip(config) == 6 * macs
  # Convolutions scale with the pixel count (the test crop is 256).
  assert 0.35 < macs / (model_stats(config)['gflops'] * 1e9) < 0.45
