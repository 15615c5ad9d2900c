"""A recorder SIGKILLed mid-episode, for real: the sim with the scripted expert, the recorder
over DDS, then repair and build_dataset keep at least 90 % of the recorded span."""

import json

import pytest

from action_diffusion_bringup.recording_drill import kill_recorder_mid_episode

KILL_AFTER_S = 5.0  # sim seconds into the episode: well before the expert finishes


@pytest.mark.ros
def test_killed_recorder_loses_at_most_its_last_chunk(tmp_path):
    pytest.importorskip("rclpy")
    report = kill_recorder_mid_episode(tmp_path, "transfer_cube", KILL_AFTER_S)
    print(json.dumps(report))
    # The unrepaired bag has no metadata.yaml, yet names its topics (written when it opened).
    from action_diffusion_policy.data import embodiment_adapter as ea

    topics = ea.record_topics(ea.load("aloha_sim"), False, "/unified_state")
    assert report["unrepaired_bag"] == {"metadata_yaml": False, "episode_json_closed": False,
                                        "episode_json_topics": len(topics)}
    assert report["recorded_span_s"] > KILL_AFTER_S - 1.0
    # At most the 1 s flush interval is lost, and the dataset keeps >= 90 % of the span.
    assert report["lost_at_the_end_s"] <= 1.0 + 0.2, report
    assert report["dataset_fraction_of_recorded_span"] >= 0.9, report
    assert report["repair"]["messages"]["/cameras/cam_high/image_raw"] > 0
    assert report["repair"]["stopped_because"]  # the kill tore the file: a real repair
