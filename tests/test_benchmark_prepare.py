"""benchmarks/prepare.py runs and prints the JSON the README quotes (tiny settings: the
figures come from running the script as the README says)."""

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_prepare_benchmark_prints_its_figures():
  result = subprocess.run(
      [sys.executable, 'benchmarks/prepare.py', '--num_videos', '2', '--seconds', '2.5',
       '--size', '64x48', '--short_side', '48'],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out['videos'] == 2 and out['source_size'] == '64x48' and out['short_side'] == 48
  assert out['prepare_wall_sec'] > 0 and out['prepare_cpu_sec'] > 0
  # Rates and times are printed rounded to 3 decimals (a tiny run takes ~0.1 s of CPU).
  assert math.isclose(out['videos_per_sec'], 2 / out['prepare_wall_sec'], rel_tol=0.05)
  assert math.isclose(out['videos_per_cpu_sec'], 2 / out['prepare_cpu_sec'], rel_tol=0.05)
  assert math.isclose(out['kinetics400_cpu_hours'],
                      240_000 / out['videos_per_cpu_sec'] / 3600, rel_tol=0.05, abs_tol=0.06)
  # 75 frames of JPEG per video: more bytes than the 2.5 s of H.264 they came from.
  assert out['prepared_mb_per_video'] > out['source_mb_per_video'] > 0
