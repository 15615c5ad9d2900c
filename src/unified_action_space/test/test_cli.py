"""The `embodiments` CLI: list, show (text and JSON), and its error for unknown names."""

import json

import pytest

from unified_action_space import cli, load_embodiment


def test_list_prints_every_shipped_embodiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("aloha", "aloha_sim", "piper", "ur5e", "fr3"):
        assert any(line.split()[0] == name for line in out.splitlines()), name


@pytest.mark.parametrize("name", ["aloha_sim", "piper", "ur5e", "fr3"])
def test_show_prints_slot_map_topics_and_limits(capsys, name):
    assert cli.main(["show", name, "--no-kinematics"]) == 0
    out = capsys.readouterr().out
    emb = load_embodiment(name, kinematics=False)
    rows = {int(line.split()[0]): line for line in out.splitlines() if line[:4].strip().isdigit()}
    for arm in emb.arms:
        assert arm.joint_state_topic in out and arm.command_topic in out
        assert arm.command_type in out
        for joint in arm.joints:
            row = rows[joint.position_slot]
            assert joint.name in row.split() and arm.name in row.split()
            assert f"{joint.position_limits[1]:.5g}" in row
    assert set(rows) == set(emb.state_slots.tolist())


def test_show_json_round_trips_the_embodiment(capsys):
    assert cli.main(["show", "aloha_sim", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    emb = load_embodiment("aloha_sim")
    assert data["action_slots"] == emb.action_slots.tolist()
    assert data["state_slots"] == emb.state_slots.tolist()
    assert data["has_kinematics"] is True
    assert [a["command_topic"] for a in data["arms"]] == [a.command_topic for a in emb.arms]
    assert {r["slot"] for r in data["slots"]} == set(emb.state_slots.tolist())


def test_show_unknown_lists_known(capsys):
    assert cli.main(["show", "tiago"]) == 2
    err = capsys.readouterr().err
    assert "unknown embodiment 'tiago'" in err and "ur5e" in err
