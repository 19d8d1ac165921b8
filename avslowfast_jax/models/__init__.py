"""AVSlowFast / SlowFast / Audio-only networks in Flax (channels-last).

``build_model(config.model, head)`` returns the :class:`AVSlowFast` module; see
docs/design.md for the call signature and the ``(logits, aux)`` contract.
``avslowfast_jax.model_builder.build_model(config)`` builds it with the task's head.

Parameter naming (stable; the PySlowFast/PyTorchVideo importer maps onto it):

- Stems: ``slow_stem/{conv,bn}``, ``fast_stem/{conv,bn}``,
  ``audio/stem/{conv_time,conv_freq,bn}``.
- Blocks: ``{slow,fast}_res{2..5}_block{i}/{conv_a,bn_a,conv_b,bn_b,conv_c,bn_c,
  shortcut_conv,shortcut_bn}``; audio: ``audio/res{k}_block{i}/...`` with
  ``conv_b_time, bn_b_time, conv_b_freq, bn_b_freq`` in the factorised res2/res3.
- Non-local: ``slow_res4_nonlocal{i}/{theta,phi,g,out,bn}``.
- Laterals: ``fast_to_slow_{pool1,res2,...}/{conv,bn}``;
  ``audio/to_visual_{stage}/{conv_a,bn_a,conv_b,bn_b}`` (A->FS, A->F->S, and the
  AV Non-local queries); ``av_nonlocal_{stage}/{theta,phi,g,out,bn}``.
- AVS projections: ``avs_visual_{junction}``, ``audio/avs_{junction}``.
- Head: ``head/...`` (``head/classifier``, or ``head/verb``, ``head/noun``).
- Conv kernels are ``[kt, kh, kw, cin, cout]`` (audio ``[kt, kf, cin, cout]``):
  a PyTorch ``[cout, cin, kt, kh, kw]`` weight maps by one transpose. BN
  variables are ``params/{scale,bias}`` and ``batch_stats/{mean,var}``.
"""

from __future__ import annotations

from typing import Optional

from flax import linen as nn

from avslowfast_jax.models.avslowfast import AVSlowFast
from avslowfast_jax.models.config import STAGE_BLOCKS, ModelConfig


def build_model(model_config, head: Optional[nn.Module] = None,
                eval_lateral_scale: float = 1.0) -> AVSlowFast:
  """The network of ``config.model`` (a ConfigDict, dict or :class:`ModelConfig`)."""
  if not isinstance(model_config, ModelConfig):
    model_config = ModelConfig.from_config(model_config)
  else:
    model_config.validate()
  return AVSlowFast(model_config, head, eval_lateral_scale)


__all__ = ['AVSlowFast', 'ModelConfig', 'STAGE_BLOCKS', 'build_model']
