"""The one description of every bringup: its launch arguments and the nodes it starts.

Pure data and functions (no rclpy, no launch). The launch files in `launch/` and the launch-free
runner (`action_diffusion_bringup.run`) both build their nodes from `describe()`, so the two
cannot drift apart. Three bringups:

- `sim`: the simulated ALOHA, the unified state node and, by default, the policy node and the
  action executor (`policy:=true`, needs `checkpoint:=DIR`); or the scripted expert
  (`policy:=false expert:=true`); optional recorder (`recorder:=true`).
- `real`: a real dual-arm robot (`robot:=aloha|piper|ur5e|fr3`) whose drivers and cameras are
  already running: unified state node, policy node, action executor, optional recorder.
  `embodiment:=PATH` runs a user's own embodiment YAML instead of the robot's shipped one.
- `record`: a real robot teleoperated by a person: unified state node and recorder.

Parameters live in YAML files under `config/` (`node_name: ros__parameters:`); a node spec
names its files and adds the few values that come from launch arguments. A real robot's arms
keep the per-arm namespaces of their drivers (e.g. /piper_left/..., from the embodiment config);
its cameras are the `cameras` of its embodiment YAML (camera name -> driver topic), which the
policy node and recorder read; they are also applied as remappings of the conventional
`/cameras/<name>/image_raw`, for a node told that topic by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action_diffusion_policy.runtime import CHUNK_TOPIC
from action_diffusion_policy.runtime.ensembler import STRATEGIES

PACKAGE = "action_diffusion_bringup"

# Real robot (launch argument `robot`) -> embodiment name in unified_action_space.
ROBOT_EMBODIMENTS: dict[str, str] = {
    "aloha": "aloha",
    "piper": "piper",
    "ur5e": "ur5e",
    "fr3": "fr3",
}
SIM_EMBODIMENT = "aloha_sim"
TASKS = ("transfer_cube", "insertion")
DEVICES = ("cpu", "cuda")
BOOLEANS = ("true", "false")

# Topic the policy node's chunks are remapped to (docs/ARCHITECTURE.md, Runtime).
ACTION_CHUNK_TOPIC = CHUNK_TOPIC
# Files a checkpoint directory must hold (docs/ARCHITECTURE.md, Policies).
CHECKPOINT_FILES = ("model.safetensors", "config.json")


class BringupError(ValueError):
    """A bringup was asked for with arguments that cannot work; the message says how to fix it."""


@dataclass(frozen=True)
class Argument:
    """One launch argument: `name:=value` on the command line of both launch and runner."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """One node to start, in terms both launch_ros.actions.Node and the runner understand.

    parameter_files: file names under this package's `config/`, applied in order;
    parameters: inline values applied after the files (they win);
    condition: name of a boolean launch argument that must be true for the node to start;
    required: when this node exits, the whole bringup stops (the runner's exit code says so).
    """

    package: str
    executable: str
    name: str
    namespace: str = ""
    parameter_files: tuple[str, ...] = ()
    parameters: tuple[tuple[str, Any], ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    condition: str | None = None
    required: bool = True

    @property
    def fully_qualified_name(self) -> str:
        namespace = self.namespace.strip("/")
        return f"/{namespace}/{self.name}" if namespace else f"/{self.name}"

    @property
    def parameter_dict(self) -> dict[str, Any]:
        return dict(self.parameters)


@dataclass(frozen=True)
class Bringup:
    name: str
    summary: str
    arguments: tuple[Argument, ...] = field(default_factory=tuple)


_EMBODIMENT_ARGUMENT = Argument(
    "embodiment",
    "",
    "Your own embodiment YAML (a path): replaces robot:='s shipped one, so a new robot or "
    "changed topics need no edit of installed files (docs/PORTING.md).",
)


def _bool_argument(name: str, default: bool, description: str) -> Argument:
    return Argument(name, "true" if default else "false", description, BOOLEANS)


_COMMON_ARGUMENTS = (
    Argument(
        "checkpoint",
        "",
        "Checkpoint directory of the policy (model.safetensors + config.json); required when "
        "policy:=true.",
    ),
    Argument(
        "strategy",
        "temporal_ensembling",
        "How the action executor combines overlapping chunks: temporal_ensembling (ACT), "
        "receding_horizon (Diffusion Policy) or rtc (real-time chunking: the policy inpaints "
        "each chunk from the last one, the executor switches on arrival).",
        STRATEGIES,
    ),
    Argument("device", "cpu", "Torch device of the policy: cpu or cuda.", DEVICES),
    Argument(
        "instruction", "", "Language instruction the policy is conditioned on (may be empty)."
    ),
    Argument(
        "bag_dir",
        "artifacts/bags",
        "Directory the recorder writes one bag per episode into (relative to the working "
        "directory).",
    ),
)

BRINGUPS: dict[str, Bringup] = {
    "sim": Bringup(
        "sim",
        "Simulated ALOHA (MuJoCo) + unified state + policy + action executor "
        "(or the scripted expert), optional recorder.",
        (
            Argument("task", "transfer_cube", "Simulated task.", TASKS),
            _bool_argument("policy", True, "Drive the sim with the policy node + action executor."),
            _bool_argument(
                "expert",
                False,
                "Drive the sim with the scripted expert instead (through the leader-arm "
                "command topics); needs policy:=false.",
            ),
            _bool_argument("recorder", False, "Record every episode into a bag under bag_dir."),
            _bool_argument(
                "use_sim_time",
                True,
                "Nodes other than the sim follow the sim's /clock instead of the wall clock.",
            ),
            *_COMMON_ARGUMENTS,
        ),
    ),
    "real": Bringup(
        "real",
        "A real dual-arm robot (drivers and cameras already running): unified state + policy + "
        "action executor, optional recorder. No sim.",
        (
            Argument(
                "robot",
                "aloha",
                "Which robot: selects the embodiment (joint-state, command and camera topics, "
                "limits; unified_action_space config/embodiments/<robot>.yaml).",
                tuple(ROBOT_EMBODIMENTS),
            ),
            _EMBODIMENT_ARGUMENT,
            _bool_argument("policy", True, "Run the policy node + action executor."),
            _bool_argument("recorder", False, "Record every episode into a bag under bag_dir."),
            _bool_argument(
                "use_sim_time",
                False,
                "Follow /clock (e.g. when replaying a bag) instead of the wall clock.",
            ),
            *_COMMON_ARGUMENTS,
        ),
    ),
    "record": Bringup(
        "record",
        "A real robot driven by a teleoperator: unified state + recorder, for demonstrations.",
        (
            Argument(
                "robot",
                "aloha",
                "Which robot: selects the embodiment and so the topics to record, cameras "
                "included (unified_action_space config/embodiments/<robot>.yaml).",
                tuple(ROBOT_EMBODIMENTS),
            ),
            _EMBODIMENT_ARGUMENT,
            Argument("task", "transfer_cube", "Task name stored in each bag's metadata."),
            Argument("instruction", "", "Language instruction stored in each bag's metadata."),
            Argument(
                "bag_dir",
                "artifacts/bags",
                "Directory the recorder writes one bag per episode into.",
            ),
            _bool_argument("use_sim_time", False, "Follow /clock instead of the wall clock."),
        ),
    ),
}


# --- arguments --------------------------------------------------------------------------------


def bringup_names() -> tuple[str, ...]:
    return tuple(BRINGUPS)


def _bringup(name: str) -> Bringup:
    try:
        return BRINGUPS[name]
    except KeyError:
        raise BringupError(
            f"unknown bringup {name!r}; known bringups: {', '.join(BRINGUPS)}"
        ) from None


def arguments(bringup: str) -> tuple[Argument, ...]:
    """The launch arguments of `bringup`, with defaults and descriptions."""
    return _bringup(bringup).arguments


def parse_launch_args(tokens: Iterable[str]) -> dict[str, str]:
    """`["robot:=piper", "policy:=false"]` -> `{"robot": "piper", "policy": "false"}`."""
    parsed: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition(":=")
        if not sep or not name:
            raise BringupError(f"launch argument {token!r} is not of the form name:=value")
        parsed[name] = value
    return parsed


def resolve_arguments(bringup: str, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults filled in and every value checked (unknown names, values outside the choices)."""
    declared = {arg.name: arg for arg in arguments(bringup)}
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise BringupError(
            f"unknown argument(s) {', '.join(unknown)} for the {bringup} bringup; "
            f"known: {', '.join(declared)}"
        )
    resolved = {name: str(given.get(name, arg.default)) for name, arg in declared.items()}
    for name, value in resolved.items():
        arg = declared[name]
        if name == "robot" and value not in ROBOT_EMBODIMENTS:
            raise BringupError(
                f"unknown robot {value!r}; known robots: {', '.join(ROBOT_EMBODIMENTS)} "
                "(robot:=NAME)"
            )
        if arg.choices:
            choice = _match_choice(value, arg.choices)
            if choice is None:
                raise BringupError(
                    f"argument {name}:={value!r} is not one of {', '.join(arg.choices)}"
                )
            resolved[name] = choice  # any letter case in, the choice's own spelling out
    return resolved


def _match_choice(value: str, choices: Sequence[str]) -> str | None:
    """The choice ``value`` names, compared without letter case (``CUDA`` -> ``cuda``)."""
    if value in choices:
        return value
    return next((choice for choice in choices if choice.lower() == value.lower()), None)


def _is_true(args: Mapping[str, str], name: str) -> bool:
    return args.get(name, "false") == "true"


def check_checkpoint(path: str) -> Path:
    """The checkpoint directory as an absolute path, or a BringupError saying what is missing."""
    if not path:
        raise BringupError(
            "checkpoint:=DIR is required when policy:=true (a directory holding "
            f"{' and '.join(CHECKPOINT_FILES)}); in the sim, policy:=false expert:=true drives "
            "the arms with the scripted expert instead"
        )
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise BringupError(f"checkpoint:={path}: no such directory ({directory})")
    missing = [name for name in CHECKPOINT_FILES if not (directory / name).is_file()]
    if missing:
        raise BringupError(
            f"checkpoint:={path}: {directory} lacks {', '.join(missing)}; a checkpoint "
            f"directory holds {' and '.join(CHECKPOINT_FILES)}"
        )
    return directory


# --- nodes ------------------------------------------------------------------------------------


CAMERA_TOPIC_CONVENTION = "/cameras/{name}/image_raw"


def robot_embodiment(args: Mapping[str, str]) -> str:
    """The embodiment a real or record bringup runs: ``embodiment:=PATH`` (absolute, checked to
    load) when given, else the shipped one of ``robot:=``."""
    path = args.get("embodiment", "")
    if not path:
        return ROBOT_EMBODIMENTS[args["robot"]]
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise BringupError(
            f"embodiment:={path}: no such file ({resolved}); pass the path of an embodiment "
            "YAML (copy one from unified_action_space config/embodiments/, see docs/PORTING.md)"
        )
    from unified_action_space import EmbodimentConfigError, load_embodiment

    try:
        load_embodiment(resolved, kinematics=False)
    except EmbodimentConfigError as error:
        raise BringupError(f"embodiment:={path}: {error}") from None
    return str(resolved)


def robot_cameras(robot: str, embodiment_name: str | None = None) -> dict[str, Any]:
    """Camera name -> ``CameraConfig`` of the robot, from its embodiment YAML's ``cameras``
    (``embodiment_name``: a name or path that replaces the robot's shipped YAML)."""
    from unified_action_space import EmbodimentConfigError, load_embodiment

    try:
        embodiment = load_embodiment(embodiment_name or ROBOT_EMBODIMENTS[robot],
                                     kinematics=False)  # fmt: skip
    except EmbodimentConfigError as error:
        raise BringupError(f"robot {robot!r}: {error}") from None
    if not embodiment.cameras:
        raise BringupError(
            f"robot {robot!r}: its embodiment {embodiment.source} lists no cameras; add a "
            "'cameras' section like the one in aloha.yaml"
        )
    return dict(embodiment.cameras)


def camera_topics(robot: str, embodiment_name: str | None = None) -> dict[str, str]:
    """Camera name -> image topic of the robot's driver, from its embodiment YAML."""
    return {name: camera.topic for name, camera in robot_cameras(robot, embodiment_name).items()}


def camera_remappings(cameras: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Remap the conventional topic of each camera (raw and compressed) to the driver's.

    ``cameras``: name -> ``CameraConfig``; a compressed camera has only its CompressedImage
    topic, the target of the conventional ``.../compressed``.
    """
    remaps: list[tuple[str, str]] = []
    for name, camera in cameras.items():
        conventional = CAMERA_TOPIC_CONVENTION.format(name=name)
        topic = camera.topic
        if camera.type == "compressed":
            remaps.append((f"{conventional}/compressed", topic))
        elif topic != conventional:
            remaps += [(conventional, topic), (f"{conventional}/compressed", f"{topic}/compressed")]
    return tuple(remaps)


def _candidate_nodes(bringup: str, args: Mapping[str, str]) -> list[NodeSpec]:
    """Every node the bringup may start, each with its condition (not yet filtered)."""
    sim_time = (("use_sim_time", _is_true(args, "use_sim_time")),)
    if bringup == "sim":
        embodiment = SIM_EMBODIMENT
        # The sim publishes every camera on its conventional topic.
        cameras_remapped: tuple[tuple[str, str], ...] = ()
        recorder_files: tuple[str, ...] = ("recorder.yaml",)
        policy_files: tuple[str, ...] = ("policy.yaml", "sim.yaml")
        state_files: tuple[str, ...] = ("unified_state.yaml", "sim.yaml")
        executor_files: tuple[str, ...] = ("executor.yaml",)
    else:
        embodiment = robot_embodiment(args)
        cameras_remapped = camera_remappings(robot_cameras(args["robot"], embodiment))
        recorder_files = ("recorder.yaml", "real.yaml")
        policy_files = ("policy.yaml",)
        state_files = ("unified_state.yaml",)
        executor_files = ("executor.yaml", "real.yaml")  # starts disabled, ramped, e-stop
    embodiment_param = (("embodiment", embodiment),)
    bag_dir = str(Path(args["bag_dir"]).expanduser().resolve())
    recorder = NodeSpec(
        "action_diffusion_policy",
        "recorder_node",
        "recorder",
        parameter_files=recorder_files,
        parameters=(
            *embodiment_param,
            ("output_dir", bag_dir),
            ("task", args.get("task", "")),
            ("instruction", args.get("instruction", "")),
            # In the sim a bag starts and stops with each episode; a teleoperator uses the
            # recorder's start/stop services instead.
            ("auto_episode", bringup == "sim"),
            *sim_time,
        ),
        remappings=cameras_remapped,
        condition=None if bringup == "record" else "recorder",
    )
    state = NodeSpec(
        "unified_action_space",
        "unified_state_node",
        "unified_state",
        parameter_files=state_files,
        parameters=(*embodiment_param, *sim_time),
    )
    if bringup == "record":
        return [state, recorder]

    checkpoint = args["checkpoint"]
    if _is_true(args, "policy"):
        checkpoint = str(check_checkpoint(checkpoint))
    policy = NodeSpec(
        "action_diffusion_policy",
        "policy_node",
        "policy",
        parameter_files=policy_files,
        parameters=(
            ("checkpoint", checkpoint),
            *embodiment_param,
            ("device", args["device"]),
            ("instruction", args["instruction"]),
            ("strategy", args["strategy"]),  # rtc: the policy conditions on the last chunk
            *sim_time,
        ),
        remappings=(("~/action_chunk", ACTION_CHUNK_TOPIC), *cameras_remapped),
        condition="policy",
    )
    executor = NodeSpec(
        "action_diffusion_policy",
        "action_executor",
        "action_executor",
        parameter_files=executor_files,
        parameters=(
            *embodiment_param,
            ("strategy", args["strategy"]),
            *sim_time,
        ),
        condition="policy",
    )
    if bringup == "real":
        return [state, policy, executor, recorder]

    sim = NodeSpec(
        "aloha_sim",
        "sim_node",
        "sim",
        parameter_files=("sim.yaml",),
        # The sim is the clock: it never follows /clock itself.
        parameters=(("task", args["task"]), ("use_sim_time", False)),
    )
    expert = NodeSpec(
        "aloha_sim",
        "scripted_expert_node",
        "scripted_expert",
        parameter_files=("sim.yaml",),
        parameters=(("task", args["task"]), *sim_time),
        condition="expert",
    )
    return [sim, state, policy, executor, expert, recorder]


def describe(bringup: str, given: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """The nodes `bringup` starts for the launch arguments `given` (defaults for the rest).

    Raises BringupError before anything starts on an unknown bringup, argument or robot, on a
    missing or incomplete checkpoint when the policy runs, and on two drivers at once in the sim.
    """
    args = resolve_arguments(bringup, given)
    if bringup == "sim" and _is_true(args, "policy") and _is_true(args, "expert"):
        raise BringupError(
            "policy:=true and expert:=true would both command the arms; pick one "
            "(policy:=false expert:=true drives the sim with the scripted expert)"
        )
    return [
        spec
        for spec in _candidate_nodes(bringup, args)
        if spec.condition is None or _is_true(args, spec.condition)
    ]


# --- files ------------------------------------------------------------------------------------


def _source_dir(name: str) -> Path:
    """``name``/ of this package in the source tree (colcon --symlink-install links to it)."""
    return Path(__file__).resolve().parent.parent / name


def _share_dir(name: str) -> Path:
    """``name``/ of the installed package when ament knows it, else of the source tree.

    The installed copy is what a user's `ros2 launch`, `make demo` from a fresh clone or the
    docker image sees; the module itself may be an installed copy, so no path is derived from
    the source tree unless ament does not know the package.
    """
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:  # plain Python without ament: the source tree is all there is
        return _source_dir(name)
    try:
        installed = Path(get_package_share_directory(PACKAGE)) / name
    except PackageNotFoundError:
        return _source_dir(name)
    return installed if installed.is_dir() else _source_dir(name)


def source_config_dir() -> Path:
    return _source_dir("config")


def config_dir() -> Path:
    """config/ of the installed package when ament knows it, else of the source tree."""
    return _share_dir("config")


def checkpoints_dir() -> Path:
    """checkpoints/ shipped with this package (the trained policies `make demo` runs)."""
    return _share_dir("checkpoints")


def parameter_file_paths(spec: NodeSpec, directory: Path | None = None) -> list[Path]:
    directory = directory or config_dir()
    paths = [directory / name for name in spec.parameter_files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise BringupError(
            f"node {spec.name}: parameter file(s) {', '.join(missing)} not found; "
            "rebuild with `bash scripts/setup.sh` after adding a config file"
        )
    return paths


def format_parameter_value(value: Any) -> str:
    """A value as the YAML text `-p name:=TEXT` reads back as the same type."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # quoted: "true", "1" and "" stay strings
    if isinstance(value, Sequence):
        return "[" + ", ".join(format_parameter_value(item) for item in value) + "]"
    raise BringupError(f"parameter value {value!r} of type {type(value).__name__} is not supported")


DDS_PROFILE = "fastdds_same_host.xml"
# Any of these set by the user means they chose their own DDS set-up: leave it alone.
DDS_ENV_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                "FASTDDS_BUILTIN_TRANSPORTS")


def dds_environment(environ: Mapping[str, str], directory: Path | None = None,
                    ) -> dict[str, str]:  # fmt: skip
    """Environment for the bringup's nodes: Fast DDS with shared memory large enough for camera
    frames (config/fastdds_same_host.xml; UDP stays for other hosts). Empty when another RMW is
    chosen or the user already configured Fast DDS."""
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps") or any(environ.get(k) for k in DDS_ENV_VARS):
        return {}
    profile = str((directory or config_dir()) / DDS_PROFILE)
    return {"FASTRTPS_DEFAULT_PROFILES_FILE": profile, "FASTDDS_DEFAULT_PROFILES_FILE": profile}


def launch_node_kwargs(spec: NodeSpec, directory: Path | None = None) -> dict[str, Any]:
    """Keyword arguments of launch_ros.actions.Node for `spec` (used by the launch files)."""
    kwargs: dict[str, Any] = {
        "package": spec.package,
        "executable": spec.executable,
        "name": spec.name,
        "parameters": [
            *(str(path) for path in parameter_file_paths(spec, directory)),
            spec.parameter_dict,
        ],
        "remappings": list(spec.remappings),
        "output": "screen",
        "emulate_tty": True,
    }
    if spec.namespace:
        kwargs["namespace"] = spec.namespace
    return kwargs


def node_command(spec: NodeSpec, executable: Path, directory: Path | None = None) -> list[str]:
    """The command line the runner starts `spec` with (what launch_ros passes, spelled out)."""
    command = [str(executable), "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        command += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for path in parameter_file_paths(spec, directory):
        command += ["--params-file", str(path)]
    for name, value in spec.parameters:
        command += ["-p", f"{name}:={format_parameter_value(value)}"]
    for source, target in spec.remappings:
        command += ["-r", f"{source}:={target}"]
    return command
