"""GFLOPs of the paper's 4x16 R50 models (abstract trace, no compute)."""

import pytest

from avslowfast_jax.tools.model_stats import model_stats
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
