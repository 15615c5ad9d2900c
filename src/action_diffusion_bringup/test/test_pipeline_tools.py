"""The end-to-end pipeline's own tools: collect/evaluate arguments, the report, the chunk plot.

The full pipeline (collect -> dataset -> train -> evaluate through the nodes) runs in
test_pipeline_smoke.py (slow)."""

import argparse
import json

import numpy as np
import pytest

from action_diffusion_bringup import collect, evaluate, report
from action_diffusion_bringup.chunk_plot import ChunkRecord, plot_chunks_vs_commands
from action_diffusion_bringup.description import NodeSpec


def test_with_parameters_overrides_one_node_only():
    specs = [
        NodeSpec("aloha_sim", "sim_node", "sim", parameters=(("task", "x"), ("seed", 1))),
        NodeSpec("p", "e", "other", parameters=(("seed", 2),)),
    ]
    out = collect.with_parameters(specs, "sim", seed=5, camera_rate=0.0)
    assert out[0].parameter_dict == {"task": "x", "seed": 5, "camera_rate": 0.0}
    assert out[1].parameter_dict == {"seed": 2}
    assert specs[0].parameter_dict == {"task": "x", "seed": 1}  # inputs untouched


def test_sim_overrides_render_nothing_for_a_low_dim_policy():
    assert collect.sim_overrides([], 1.0, 400)["camera_rate"] == 0.0
    with_cam = collect.sim_overrides(["cam_high"], 2.0, 450)
    assert with_cam["cameras"] == ["cam_high"] and with_cam["camera_rate"] > 0
    assert with_cam["real_time_factor"] == 2.0 and with_cam["episode_length"] == 450


def test_recorder_topics_without_cameras_record_no_image_topic():
    topics = collect.recorder_topics([])["topics"]
    assert any(t.startswith("/follower_left/joint_states:") for t in topics)
    assert any(t.startswith("/sim/episode_status:") for t in topics)
    assert not any("Image" in t for t in topics)
    assert collect.recorder_topics(["cam_high"]) == {
        "camera_topics": ["/cameras/cam_high/image_raw"]
    }


def test_collect_refuses_a_non_empty_bag_dir(tmp_path, capsys):
    (tmp_path / "old_bag").mkdir()
    assert collect.main(["--bag-dir", str(tmp_path), "--episodes", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "old_bag").exists()


@pytest.mark.parametrize(
    ("text", "seeds"), [("1000:1003", [1000, 1001, 1002]), ("3,5,8", [3, 5, 8])]
)
def test_parse_seeds(text, seeds):
    assert evaluate.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["5:5", "a:b", ""])
def test_parse_seeds_rejects_nonsense(text):
    with pytest.raises(argparse.ArgumentTypeError):
        evaluate.parse_seeds(text)


def test_evaluate_rejects_a_missing_checkpoint_before_starting_nodes(tmp_path, capsys):
    code = evaluate.main(
        ["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")]
    )
    assert code == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def closed_loop_run(strategy, successes, episodes=4):
    return {
        "kind": "closed_loop",
        "task": "transfer_cube",
        "strategy": strategy,
        "policy": {
            "name": "unet+ddpm",
            "observation": "state + object pose",
            "checkpoint_id": "abcdef0123456789",
        },
        "seeds": list(range(1000, 1000 + episodes)),
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes,
        "latency_ms": {"p50": 31.4, "p95": 55.0},
        "commit": "deadbee",
        "command": f"python -m action_diffusion_bringup.evaluate --strategy {strategy}",
    }


def test_report_tables_every_run(tmp_path):
    paths = []
    for strategy, ok in (("temporal_ensembling", 3), ("receding_horizon", 1)):
        p = tmp_path / f"eval_{strategy}.json"
        p.write_text(json.dumps(closed_loop_run(strategy, ok)))
        paths.append(p)
    offline = tmp_path / "offline.json"
    offline.write_text(
        json.dumps(
            {
                "checkpoint_id": "abcdef0123456789",
                "input": ["/x/heldout"],
                "episodes": 3,
                "steps": 90,
                "per_slot": {},
                "mae": 0.0125,
                "rmse": 0.02,
                "mae_per_horizon_step": [0.01, 0.03],
            }
        )
    )
    assert report.main([*map(str, paths), str(offline), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| transfer_cube | unet+ddpm | state + object pose (privileged sim state) "
        "| receding_horizon | **25%** (1/4) | 5%-70% |" in md
    )
    assert "| temporal_ensembling | **75%** (3/4) | 30%-95% |" in md
    assert "31 / 55" in md and "deadbee" in md
    assert (
        "| `abcdef012345` | heldout (3 episodes) | 90 | 0.0125 | 0.0200 | 0.0100 | 0.0300 |" in md
    )
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(data["closed_loop"]) == 2 and len(data["offline"]) == 1


def test_report_rejects_unknown_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(SystemExit, match="neither a closed-loop"):
        report.main([str(p), "--out", str(tmp_path)])


def test_chunk_plot_writes_a_png(tmp_path):
    slots = np.array([0, 10])
    chunks = [
        ChunkRecord(stamp=0.1 * i, step_period=0.02, slots=slots, actions=np.full((16, 2), i))
        for i in range(5)
    ]
    times = np.arange(0, 0.6, 0.02)
    commands = np.stack([times, times], axis=1)
    path = plot_chunks_vs_commands(
        chunks,
        times,
        commands,
        [0, 10],
        ["right_arm_joint_0_pos", "right_gripper_open"],
        tmp_path / "plot.png",
    )
    assert path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_chunks_vs_commands(chunks, times, commands[:, :1], [0, 10], ["a", "b"], path)


def test_wilson_interval_matches_hand_computed_values():
    lo, hi = report.wilson_interval(49, 50)
    assert lo == pytest.approx(0.8950, abs=5e-4) and hi == pytest.approx(0.9965, abs=5e-4)
    assert report.wilson_interval(0, 10)[0] == 0.0
    assert report.wilson_interval(10, 10)[1] == 1.0


def test_observation_labels_privileged_state():
    assert report.observation_label({"camera_names": ["cam_high"], "env_state_dim": 0}) == (
        "cam_high + state")
    assert report.observation_label({"camera_names": [], "env_state_dim": 7}) == (
        "state + object pose (privileged sim state)")
    assert "privileged" in report.observation_label({"camera_names": []})  # older files
