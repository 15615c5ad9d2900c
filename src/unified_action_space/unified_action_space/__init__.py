"""RDT's physically interpretable 128-slot unified action space: layout, robot embodiments,
state/command mapping and the unified state node (only ``nodes/`` imports rclpy)."""

from unified_action_space.embodiment import (
    COMMAND_TYPES,
    ArmConfig,
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
    "COMMAND_TYPES",
    "GROUPS",
    "NUM_SLOTS",
    "SLOT_NAMES",
    "ArmConfig",
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
