"""The launch files: valid Python, every argument described, nodes built from the description.

`launch` and `launch_ros` cannot be installed on these machines, so the last test executes each
launch file against STAND-INS for the few launch/launch_ros classes it uses through
`launch_helper` (the `Standin*`
classes below, put into sys.modules only for that test). The stand-ins record what the launch
file asks for; they prove the file builds exactly the description's nodes for every robot and
that launch and runner hand each node the same command line. They do not prove that the real
launch_ros accepts the keyword arguments: those are the documented ones of
launch_ros.actions.Node (package, executable, name, namespace, parameters, remappings, output,
emulate_tty) and launch.actions.DeclareLaunchArgument (name, default_value, description, choices).
"""

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from action_diffusion_bringup import description as d
from action_diffusion_bringup import launch_helper

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"
LAUNCH_FILES = {bringup: LAUNCH_DIR / f"{bringup}.launch.py" for bringup in d.bringup_names()}


def test_one_launch_file_per_bringup():
    assert sorted(LAUNCH_DIR.glob("*.launch.py")) == sorted(LAUNCH_FILES.values())


def from_imports(tree: ast.AST) -> set[tuple[str, str]]:
    """(module, name) of every ``from module import name`` in ``tree``."""
    return {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize("bringup", d.bringup_names())
def test_launch_file_compiles_and_reads_the_shared_description(bringup):
    """Each launch file is a few lines: its bringup's name handed to the one launch helper."""
    source = LAUNCH_FILES[bringup].read_text()
    tree = ast.parse(source)
    compile(source, str(LAUNCH_FILES[bringup]), "exec")
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    imports = from_imports(tree)
    assert ("action_diffusion_bringup.launch_helper", "bringup_launch_description") in imports
    constants = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    ]
    assert constants == [bringup]
    called = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert called == {"bringup_launch_description"}


def test_the_launch_helper_builds_every_node_from_the_description():
    tree = ast.parse(Path(launch_helper.__file__).read_text())
    imports = from_imports(tree)
    assert ("action_diffusion_bringup", "description") in imports
    assert ("launch_ros.actions", "Node") in imports
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    called = {ast.unparse(call.func) for call in calls}
    assert {"description.describe", "description.arguments", "OpaqueFunction"} <= called
    # No node is spelled out by hand: every Node(...) is built from a description spec.
    for call in calls:
        if ast.unparse(call.func) == "Node":
            assert [ast.unparse(k.value) for k in call.keywords] == [
                "description.launch_node_kwargs(spec)"
            ]
        if ast.unparse(call.func) == "DeclareLaunchArgument":
            keywords = {k.arg for k in call.keywords}
            assert {"default_value", "description"} <= keywords


# --- stand-ins for launch / launch_ros (test doubles, not the real packages) -------------------


class StandinLaunchContext:
    def __init__(self, launch_configurations):
        self.launch_configurations = dict(launch_configurations)


class StandinDeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None):
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = choices


class StandinLaunchConfiguration:
    def __init__(self, variable_name):
        self.variable_name = variable_name

    def perform(self, context):
        return context.launch_configurations[self.variable_name]


class StandinOpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None):
        self.function = function

    def execute(self, context):
        return self.function(context)


class StandinSetEnvironmentVariable:
    def __init__(self, name, value):
        self.name, self.value = name, value


class StandinNode:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class StandinLaunchDescription:
    def __init__(self, entities):
        self.entities = list(entities)


def standin_modules():
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = StandinLaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = StandinDeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = StandinOpaqueFunction
    modules["launch.actions"].SetEnvironmentVariable = StandinSetEnvironmentVariable
    modules["launch.substitutions"].LaunchConfiguration = StandinLaunchConfiguration
    modules["launch_ros.actions"].Node = StandinNode
    return modules


def run_launch_file(bringup, given, monkeypatch):
    """What `ros2 launch ... name:=value` would do with the file, on the stand-ins."""
    for name, module in standin_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(f"launch_file_{bringup}", LAUNCH_FILES[bringup])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    launch_description = module.generate_launch_description()
    declared = [
        e for e in launch_description.entities if isinstance(e, StandinDeclareLaunchArgument)
    ]
    configurations = {arg.name: arg.default_value for arg in declared}
    for name, value in given.items():
        assert name in configurations, f"{name} is not declared by {bringup}.launch.py"
        configurations[name] = value
    context = StandinLaunchContext(configurations)
    nodes = []
    for entity in launch_description.entities:
        if isinstance(entity, StandinOpaqueFunction):
            nodes += entity.execute(context)
    return declared, nodes


def test_launch_files_set_the_dds_profile_unless_the_user_did(monkeypatch):
    for var in d.DDS_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    for name, module in standin_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    from action_diffusion_bringup.launch_helper import bringup_launch_description

    env = {e.name: e.value for e in bringup_launch_description("sim").entities
           if isinstance(e, StandinSetEnvironmentVariable)}
    assert env and all(v.endswith(d.DDS_PROFILE) for v in env.values())
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    assert not [e for e in bringup_launch_description("sim").entities
                if isinstance(e, StandinSetEnvironmentVariable)]


def launch_ros_command(kwargs, executable):
    """The command line launch_ros builds for Node(**kwargs) (dict parameters as -p here)."""
    command = [str(executable), "--ros-args", "-r", f"__node:={kwargs['name']}"]
    if kwargs.get("namespace"):
        command += ["-r", f"__ns:=/{kwargs['namespace'].strip('/')}"]
    for entry in kwargs["parameters"]:
        if isinstance(entry, dict):
            for name, value in entry.items():
                command += ["-p", f"{name}:={d.format_parameter_value(value)}"]
        else:
            command += ["--params-file", entry]
    for source, target in kwargs["remappings"]:
        command += ["-r", f"{source}:={target}"]
    return command


def cases(checkpoint):
    yield "sim", {"checkpoint": checkpoint}
    yield "sim", {"policy": "false", "expert": "true", "recorder": "true", "task": "insertion"}
    for robot in d.ROBOT_EMBODIMENTS:
        yield "real", {"robot": robot, "checkpoint": checkpoint, "strategy": "receding_horizon"}
        yield "record", {"robot": robot}


def test_launch_files_on_standins_build_the_description_nodes(monkeypatch, tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name in d.CHECKPOINT_FILES:
        (checkpoint / name).write_text("{}")
    for bringup, given in cases(str(checkpoint)):
        declared, nodes = run_launch_file(bringup, given, monkeypatch)
        # Arguments: exactly the description's, each with its description and choices.
        assert [(a.name, a.default_value, a.description) for a in declared] == [
            (a.name, a.default, a.description) for a in d.arguments(bringup)
        ]
        for arg, standin in zip(d.arguments(bringup), declared):
            assert (standin.choices or []) == list(arg.choices)
        # Nodes: the same, in the same order, with the same command line as the runner's.
        specs = d.describe(bringup, given)
        assert [n.kwargs["name"] for n in nodes] == [s.name for s in specs], (bringup, given)
        for node, spec in zip(nodes, specs):
            assert (node.kwargs["package"], node.kwargs["executable"]) == (
                spec.package,
                spec.executable,
            )
            for entry in node.kwargs["parameters"]:
                if not isinstance(entry, dict):
                    assert yaml.safe_load(Path(entry).read_text()), entry
            executable = tmp_path / spec.executable
            assert launch_ros_command(node.kwargs, executable) == d.node_command(spec, executable)


def test_launch_file_refuses_a_missing_checkpoint_before_any_node(monkeypatch):
    with pytest.raises(d.BringupError, match="checkpoint"):
        run_launch_file("real", {"robot": "piper"}, monkeypatch)
