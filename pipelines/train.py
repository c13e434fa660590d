"""Train a restoration model: the command-line entry point (the CLI is pipelines/launch.py, the loop pipelines/loop.py).

    python pipelines/train.py                       # demo recipe, local Ray, local MLflow store
    python pipelines/train.py --recipe refusion_deblurring --set data.source.lq_dir=/data/gopro/train/LQ \
        --set data.source.gt_dir=/data/gopro/train/GT --num-workers 4 --use-gpu
    ray job submit --working-dir . -- python pipelines/train.py --smoke-test

Only a script: nothing imports it, so the CLI, the TorchTrainer set-up and the loop import one way.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (also under `ray job submit`): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import cli  # noqa: E402  (after the path fix above)
from pipelines.launch import main  # noqa: E402

if __name__ == "__main__":
    cli.run(main, prog="pipelines/train.py")
