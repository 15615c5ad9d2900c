"""Every shipped checkpoint gives its pinned chunk for the fixed observation and noise.

A change to the models, heads, normalizer or preprocessing that moves a shipped policy's
actions fails here. When such a change is intended, regenerate with
``python -m action_diffusion_policy.testing.golden CHECKPOINT --write`` and say so in the commit.
"""

from pathlib import Path

import pytest

from action_diffusion_policy.testing import golden

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = sorted(p for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def test_there_are_shipped_checkpoints():
    assert SHIPPED, f"no checkpoint directories under {CHECKPOINTS}"


@pytest.mark.parametrize("checkpoint", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint_matches_its_golden_chunk(checkpoint):
    report = golden.compare(checkpoint)
    assert report["checkpoint_id"] == report["stored_checkpoint_id"], (
        f"{checkpoint.name}: the weights changed since golden.json was written")
    assert report["max_abs_diff"] <= golden.TOLERANCE, (
        f"{checkpoint.name}: chunk moved by {report['max_abs_diff']:.2e} "
        f"(tolerance {golden.TOLERANCE:.0e})")


def test_golden_compare_detects_a_moved_action(tmp_path):
    """The check can fail: perturb one stored value past the tolerance."""
    import json
    import shutil

    src = SHIPPED[0]
    ckpt = tmp_path / src.name
    shutil.copytree(src, ckpt)
    body = json.loads((ckpt / golden.GOLDEN_FILE).read_text())
    body["chunk"][3][1] += 10 * golden.TOLERANCE
    (ckpt / golden.GOLDEN_FILE).write_text(json.dumps(body))
    assert golden.compare(ckpt)["max_abs_diff"] > golden.TOLERANCE
