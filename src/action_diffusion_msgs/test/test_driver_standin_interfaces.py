"""The driver stand-ins (src/driver_standins/) keep the vendors' field names and types.

Each stand-in must match the expected fields exactly, so a drift in a stand-in fails here. Where
the real vendor package is installed (the robot PC's ROS installation) and was used instead, the
fields this project relies on must be present in it with the same types (extra fields allowed).
"""

import importlib
from pathlib import Path

import pytest

STRINGS = "sequence<string>"
CONTROLLER_STATE = {
    "name": "string",
    "state": "string",
    "type": "string",
    "is_async": "boolean",
    "update_rate": "uint16",
    "claimed_interfaces": STRINGS,
    "required_command_interfaces": STRINGS,
    "required_state_interfaces": STRINGS,
    "is_chainable": "boolean",
    "is_chained": "boolean",
    "exported_state_interfaces": STRINGS,
    "reference_interfaces": STRINGS,
    "chain_connections": "sequence<controller_manager_msgs/ChainConnection>",
}
GRIPPER_RESULT = {
    "position": "double",
    "effort": "double",
    "stalled": "boolean",
    "reached_goal": "boolean",
}

# (package, module, type path inside the module, expected fields)
EXPECTED = [
    (
        "interbotix_xs_msgs",
        "msg",
        "JointGroupCommand",
        {"name": "string", "cmd": "sequence<float>"},
    ),
    ("interbotix_xs_msgs", "msg", "JointSingleCommand", {"name": "string", "cmd": "float"}),
    (
        "interbotix_xs_msgs",
        "srv",
        "TorqueEnable.Request",
        {"cmd_type": "string", "name": "string", "enable": "boolean"},
    ),
    ("interbotix_xs_msgs", "srv", "TorqueEnable.Response", {}),
    ("control_msgs", "msg", "GripperCommand", {"position": "double", "max_effort": "double"}),
    ("control_msgs", "action", "GripperCommand.Goal", {"command": "control_msgs/GripperCommand"}),
    ("control_msgs", "action", "GripperCommand.Result", GRIPPER_RESULT),
    ("control_msgs", "action", "GripperCommand.Feedback", GRIPPER_RESULT),
    (
        "controller_manager_msgs",
        "msg",
        "ChainConnection",
        {"name": "string", "reference_interfaces": STRINGS},
    ),
    ("controller_manager_msgs", "msg", "ControllerState", CONTROLLER_STATE),
    ("controller_manager_msgs", "srv", "ListControllers.Request", {}),
    (
        "controller_manager_msgs",
        "srv",
        "ListControllers.Response",
        {"controller": "sequence<controller_manager_msgs/ControllerState>"},
    ),
]


def _is_standin(package: str) -> bool:
    """True when the package found is this project's stand-in, not the vendor's package."""
    from ament_index_python.packages import get_package_share_directory

    xml = Path(get_package_share_directory(package)) / "package.xml"
    return "TEST STAND-IN:" in xml.read_text(errors="replace")


@pytest.mark.parametrize(
    ("package", "module", "type_path", "expected"),
    EXPECTED,
    ids=[f"{p}/{m}/{t}" for p, m, t, _ in EXPECTED],
)
def test_fields_and_types(package, module, type_path, expected):
    interface = importlib.import_module(f"{package}.{module}")
    for part in type_path.split("."):
        interface = getattr(interface, part)
    fields = dict(interface.get_fields_and_field_types())
    if _is_standin(package):
        assert fields == expected
    else:
        missing = {k: v for k, v in expected.items() if fields.get(k) != v}
        assert not missing, f"installed {package} lacks or retypes {missing}: {fields}"
