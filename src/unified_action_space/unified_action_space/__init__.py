"""RDT's physically interpretable 128-slot unified action space: layout, robot embodiments,
state/command mapping and the unified state node (only ``nodes/`` imports rclpy)."""

from unified_action_space.embodiment import (
    CAMERA_TYPES,
    COMMAND_TYPES,
    ArmConfig,
    CameraConfig,
    Embodiment,
    EmbodimentConfigError,
    JointConfig,
    JointStateError,
    embodiment_from_dict,
    list_embodiments,
    load_embodiment,
)
from unified_action_space.layout import (
    GROUPS,
    NUM_SLOTS,
    SLOT_NAMES,
    rotation_6d_to_matrix,
    rotation_matrix_to_6d,
    slot_index,
    slot_name,
)

__all__ = [
    "CAMERA_TYPES",
    "COMMAND_TYPES",
    "GROUPS",
    "NUM_SLOTS",
    "SLOT_NAMES",
    "ArmConfig",
    "CameraConfig",
    "Embodiment",
    "EmbodimentConfigError",
    "JointConfig",
    "JointStateError",
    "embodiment_from_dict",
    "list_embodiments",
    "load_embodiment",
    "rotation_6d_to_matrix",
    "rotation_matrix_to_6d",
    "slot_index",
    "slot_name",
]
