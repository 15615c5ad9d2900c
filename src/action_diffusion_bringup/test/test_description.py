"""The shared bringup description: arguments, nodes per robot, errors, config files."""

import ast
import re
import tempfile
from pathlib import Path

import pytest
import yaml

from action_diffusion_bringup import description as d
from action_diffusion_bringup.description import BringupError
from unified_action_space import load_embodiment
from unified_action_space.embodiment import resolve_embodiment_path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = PACKAGE_DIR.parent
CONFIG_DIR = PACKAGE_DIR / "config"


@pytest.fixture
def checkpoint(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    for name in d.CHECKPOINT_FILES:
        (directory / name).write_text("{}")
    return directory


def all_bringups(checkpoint):
    """(bringup, given) for every bringup, robot and driver the description knows."""
    cases = [
        ("sim", {"checkpoint": str(checkpoint)}),
        ("sim", {"policy": "false", "expert": "true", "recorder": "true"}),
        ("sim", {"policy": "false", "task": "insertion"}),
    ]
    for robot in d.ROBOT_EMBODIMENTS:
        cases.append(("real", {"robot": robot, "checkpoint": str(checkpoint), "recorder": "true"}))
        cases.append(("record", {"robot": robot}))
    return cases


def names(specs):
    return [spec.name for spec in specs]


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bringup", d.bringup_names())
def test_every_argument_has_a_description_and_a_valid_default(bringup):
    args = d.arguments(bringup)
    assert args, bringup
    assert len({arg.name for arg in args}) == len(args)
    for arg in args:
        assert len(arg.description) > 10, arg.name
        assert not arg.choices or arg.default in arg.choices, arg.name


def test_parse_launch_args():
    assert d.parse_launch_args(["robot:=piper", "instruction:=a b:=c", "checkpoint:="]) == {
        "robot": "piper",
        "instruction": "a b:=c",
        "checkpoint": "",
    }
    with pytest.raises(BringupError, match="name:=value"):
        d.parse_launch_args(["robot=piper"])


def test_unknown_robot_lists_the_known_ones():
    for bringup in ("real", "record"):
        with pytest.raises(BringupError) as error:
            d.describe(bringup, {"robot": "baxter"})
        message = str(error.value)
        assert "'baxter'" in message
        for robot in ("aloha", "piper", "ur5e", "fr3"):
            assert robot in message


def test_unknown_argument_and_bad_choice_are_named():
    with pytest.raises(BringupError, match=r"robot.*known: task"):
        d.describe("sim", {"robot": "aloha", "policy": "false"})
    with pytest.raises(BringupError, match=r"strategy:='fastest'.*temporal_ensembling"):
        d.describe("sim", {"policy": "false", "strategy": "fastest"})
    with pytest.raises(BringupError, match=r"unknown bringup 'demo'.*sim, real, record"):
        d.describe("demo")


def test_choices_are_normalised_to_their_own_spelling(checkpoint):
    given = {"checkpoint": str(checkpoint), "strategy": "Receding_Horizon", "device": "CUDA",
             "task": "INSERTION", "recorder": "True"}  # fmt: skip
    resolved = d.resolve_arguments("sim", given)
    assert [resolved[k] for k in ("strategy", "device", "task", "recorder")] == [
        "receding_horizon", "cuda", "insertion", "true"]  # fmt: skip
    specs = {spec.name: spec for spec in d.describe("sim", given)}
    assert specs["action_executor"].parameter_dict["strategy"] == "receding_horizon"
    assert specs["policy"].parameter_dict["device"] == "cuda"
    assert specs["sim"].parameter_dict["task"] == "insertion"
    with pytest.raises(BringupError, match=r"device:='tpu' is not one of cpu, cuda"):
        d.resolve_arguments("sim", {"device": "tpu"})


@pytest.mark.parametrize("bringup", ["sim", "real"])
def test_missing_checkpoint_fails_before_any_node(bringup, tmp_path):
    with pytest.raises(BringupError, match="checkpoint:=DIR is required"):
        d.describe(bringup)
    with pytest.raises(BringupError, match="no such directory"):
        d.describe(bringup, {"checkpoint": str(tmp_path / "nowhere")})
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(BringupError, match=r"lacks model\.safetensors"):
        d.describe(bringup, {"checkpoint": str(tmp_path / "half")})


def test_policy_and_expert_together_are_refused(checkpoint):
    with pytest.raises(BringupError, match="pick one"):
        d.describe("sim", {"checkpoint": str(checkpoint), "expert": "true"})


# --- nodes --------------------------------------------------------------------------------------


def test_sim_nodes_follow_the_conditions(checkpoint):
    with_policy = d.describe("sim", {"checkpoint": str(checkpoint)})
    assert names(with_policy) == ["sim", "unified_state", "policy", "action_executor"]
    with_expert = d.describe("sim", {"policy": "false", "expert": "true", "recorder": "true"})
    assert names(with_expert) == ["sim", "unified_state", "scripted_expert", "recorder"]
    assert with_expert[-1].parameter_dict["auto_episode"] is True
    for spec in with_policy + with_expert:
        params = spec.parameter_dict
        if spec.executable == "sim_node":
            assert params["use_sim_time"] is False  # the sim is the clock
        else:
            assert params["use_sim_time"] is True
        if "embodiment" in params:
            assert params["embodiment"] == d.SIM_EMBODIMENT
    policy = with_policy[2]
    assert policy.parameter_dict["checkpoint"] == str(checkpoint.resolve())
    assert ("~/action_chunk", d.ACTION_CHUNK_TOPIC) in policy.remappings


@pytest.mark.parametrize("robot", list(d.ROBOT_EMBODIMENTS))
def test_real_robot_selects_embodiment_and_camera_topics(robot, checkpoint):
    specs = d.describe("real", {"robot": robot, "checkpoint": str(checkpoint)})
    assert names(specs) == ["unified_state", "policy", "action_executor"]
    for spec in specs:
        assert spec.parameter_dict["embodiment"] == d.ROBOT_EMBODIMENTS[robot]
        assert spec.parameter_dict["use_sim_time"] is False
    embodiment = load_embodiment(d.ROBOT_EMBODIMENTS[robot], kinematics=False)
    cameras = embodiment.camera_topics
    assert set(cameras) >= {"cam_high"}
    assert d.camera_topics(robot) == cameras
    recorded = d.describe("record", {"robot": robot, "task": "fold"})
    assert names(recorded) == ["unified_state", "recorder"]
    assert recorded[1].parameter_dict["task"] == "fold"
    assert recorded[1].parameter_dict["auto_episode"] is False
    for spec in (specs[1], recorded[1]):  # policy and recorder see the robot's cameras
        remaps = dict(spec.remappings)
        for name, topic in cameras.items():
            conventional = f"/cameras/{name}/image_raw"
            assert remaps.get(conventional, conventional) == topic
            assert remaps.get(f"{conventional}/compressed", f"{conventional}/compressed") == (
                f"{topic}/compressed"
            )


def test_piper_cameras_are_remapped_to_its_drivers(checkpoint):
    policy = d.describe("real", {"robot": "piper", "checkpoint": str(checkpoint)})[1]
    assert ("/cameras/cam_high/image_raw", "/camera_f/color/image_raw") in policy.remappings


def test_a_bad_camera_table_names_the_file_and_key(tmp_path, monkeypatch):
    data = yaml.safe_load(resolve_embodiment_path("piper").read_text())
    data["cameras"]["cam_high"]["topic"] = "camera_f/image"
    (tmp_path / "piper.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setitem(d.ROBOT_EMBODIMENTS, "piper", str(tmp_path / "piper.yaml"))
    with pytest.raises(BringupError, match=r"piper\.yaml: cameras\.cam_high\.topic"):
        d.describe("record", {"robot": "piper"})
    del data["cameras"]
    (tmp_path / "piper.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BringupError, match="lists no cameras"):
        d.describe("record", {"robot": "piper"})


def test_real_without_policy_needs_no_checkpoint():
    assert names(d.describe("real", {"policy": "false"})) == ["unified_state"]


# --- config files -------------------------------------------------------------------------------


def key_matches(key, fully_qualified_name):
    """rcl's rule for a parameter file's node key (`name` means `/name`; `*`, `**` wildcards)."""
    key = key if key.startswith("/") else "/" + key
    pattern = re.escape(key).replace(r"/\*\*", "(/[^/]+)*").replace(r"\*", "[^/]+")
    return re.fullmatch(pattern, fully_qualified_name) is not None


def parameter_files():
    return sorted(CONFIG_DIR.glob("*.yaml"))


def test_config_files_are_ros_parameter_files():
    files = parameter_files()
    assert files
    for path in files:
        content = yaml.safe_load(path.read_text())
        assert isinstance(content, dict) and content, path.name
        for node, section in content.items():
            assert list(section) == ["ros__parameters"], f"{path.name}: {node}"
            assert isinstance(section["ros__parameters"], dict), f"{path.name}: {node}"


def test_every_parameter_file_has_a_section_for_each_node_using_it(checkpoint):
    used = set()
    for bringup, given in all_bringups(checkpoint):
        for spec in d.describe(bringup, given):
            for path in d.parameter_file_paths(spec, CONFIG_DIR):
                used.add(path.name)
                keys = yaml.safe_load(path.read_text())
                assert any(key_matches(key, spec.fully_qualified_name) for key in keys), (
                    f"{path.name} has no section for {spec.fully_qualified_name}"
                )
    assert used == {path.name for path in parameter_files()}, "unused config files"
    # One camera table: the embodiment YAML's `cameras`, none here.
    assert not list(CONFIG_DIR.glob("cameras_*.yaml"))


def console_script_modules(package):
    """executable -> module path, from the package's setup.py console_scripts."""
    text = (SRC_DIR / package / "setup.py").read_text()
    return dict(re.findall(r'"(\w+) = ([\w.]+):main"', text))


def declared_names(module_path):
    """String constants in the node module: every parameter it declares is among them."""
    tree = ast.parse(module_path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def _node_cases():
    """One case per node of every bringup: (bringup case index, node index), with an id.

    A bringup that cannot be described here becomes one case that fails at run time with
    describe()'s error, rather than a collection error that hides every other case."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp)
        for name in d.CHECKPOINT_FILES:
            (checkpoint / name).write_text("{}")
        cases = []
        for i, (bringup, given) in enumerate(all_bringups(checkpoint)):
            label = "-".join(f"{k}={v}" for k, v in given.items() if k != "checkpoint")
            prefix = f"{bringup}-{label or 'default'}"
            try:
                specs = d.describe(bringup, given)
            except Exception:  # reported by that case itself, at run time
                cases.append(pytest.param(i, None, id=f"{prefix}-describe"))
                continue
            cases += [pytest.param(i, j, id=f"{prefix}-{s.name}") for j, s in enumerate(specs)]
        return cases


@pytest.mark.parametrize(("case", "node"), _node_cases())
def test_parameters_are_ones_the_nodes_declare(checkpoint, case, node):
    """A parameter no node declares is silently ignored by rclpy: catch the typo here.

    One case per node, so a node module that is missing skips that node only."""
    bringup, given = all_bringups(checkpoint)[case]
    specs = d.describe(bringup, given)
    assert node is not None, f"describe({bringup!r}) raised only at collection"
    spec = specs[node]
    module = console_script_modules(spec.package)[spec.executable]
    path = SRC_DIR / spec.package / (module.replace(".", "/") + ".py")
    if not path.is_file():
        pytest.skip(f"{path} not written yet")
    literals = declared_names(path)
    given_names = set(spec.parameter_dict) - {"use_sim_time"}
    for file in d.parameter_file_paths(spec, CONFIG_DIR):
        for key, section in yaml.safe_load(file.read_text()).items():
            if key_matches(key, spec.fully_qualified_name):
                given_names |= set(section["ros__parameters"]) - {"use_sim_time"}
    unknown = sorted(given_names - literals)
    assert not unknown, f"{spec.executable} does not declare {unknown} ({path})"


def test_node_command_spells_out_files_parameters_and_remaps(checkpoint, tmp_path):
    spec = d.describe("sim", {"checkpoint": str(checkpoint)})[2]
    command = d.node_command(spec, tmp_path / "policy_node", CONFIG_DIR)
    assert command[:4] == [str(tmp_path / "policy_node"), "--ros-args", "-r", "__node:=policy"]
    assert f"checkpoint:={d.format_parameter_value(str(checkpoint.resolve()))}" in command
    assert command[-2:] == ["-r", f"~/action_chunk:={d.ACTION_CHUNK_TOPIC}"]
    files = [command[i + 1] for i, token in enumerate(command) if token == "--params-file"]
    assert [Path(f).name for f in files] == list(spec.parameter_files)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (3, "3"),
        (0.5, "0.5"),
        ("true", '"true"'),
        ("", '""'),
        ([1.0, 2.0], "[1.0, 2.0]"),
    ],
)
def test_parameter_values_keep_their_type_on_the_command_line(value, text):
    assert d.format_parameter_value(value) == text
    assert yaml.safe_load(text) == value


def test_embodiment_path_replaces_the_shipped_yaml(tmp_path, checkpoint):
    data = yaml.safe_load(resolve_embodiment_path("piper").read_text())
    data["name"] = "my_piper"
    data["cameras"]["cam_high"]["topic"] = "/front/color/image_raw"
    mine = tmp_path / "my_piper.yaml"
    mine.write_text(yaml.safe_dump(data))
    for bringup, given in (("real", {"checkpoint": str(checkpoint), "recorder": "true"}),
                           ("record", {})):
        specs = d.describe(bringup, {"robot": "piper", "embodiment": str(mine), **given})
        for spec in specs:
            assert spec.parameter_dict["embodiment"] == str(mine.resolve())
        recorder = specs[-1]
        assert ("/cameras/cam_high/image_raw", "/front/color/image_raw") in recorder.remappings
    shipped = d.describe("record", {"robot": "piper"})
    assert shipped[0].parameter_dict["embodiment"] == "piper"


def test_a_bad_embodiment_path_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(BringupError, match=r"embodiment:=.*nope\.yaml: no such file.*PORTING"):
        d.describe("record", {"embodiment": str(tmp_path / "nope.yaml")})
    data = yaml.safe_load(resolve_embodiment_path("piper").read_text())
    data["arms"]["right"]["command_type"] = "std_msgs/msg/String"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BringupError, match=r"embodiment:=.*bad\.yaml.*command_type"):
        d.describe("record", {"embodiment": str(tmp_path / "bad.yaml")})
