"""Forward kinematics for the end-effector slots, computed by MuJoCo from a robot model file.

Only the joint positions of the arms are written into ``qpos``; ``mj_kinematics`` then gives
every body's world pose, and the end-effector pose is expressed in the arm's base body frame,
which is what a driver's own FK (base_link -> tool frame) reports on the real robot.
One ``MjData`` is reused across calls, guarded by a lock so callers on several threads are safe.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class KinematicsError(ValueError):
    """A kinematic model could not be found or does not match the embodiment config."""


@dataclass(frozen=True)
class MujocoArmChain:
    """Where one arm lives in the MuJoCo model."""

    joint_names: tuple[str, ...]  # model joint names, in the order positions are given
    base_body: str
    eef_body: str


def resolve_model_path(model: str, package: str | None, relative_to: Path | None) -> Path:
    """Model file from a Python package's directory, or relative to the config file."""
    if package:
        spec = importlib.util.find_spec(package)  # find, never import: gym_aloha needs gymnasium
        if spec is None or not spec.submodule_search_locations:
            raise KinematicsError(
                f"kinematics.model_package {package!r} is not installed; install it or give "
                "kinematics.model as a path (or load the embodiment with kinematics=False)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / model
    else:
        path = Path(model)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
    if not path.is_file():
        raise KinematicsError(f"kinematics.model: file {str(path)!r} does not exist")
    return path


class MujocoKinematics:
    """Batched end-effector poses of several arms in one MuJoCo model."""

    def __init__(self, model_path: str | Path, chains: tuple[MujocoArmChain, ...]):
        import mujoco  # heavy; only embodiments with a kinematic model pay for it

        self._mujoco = mujoco
        self.model_path = Path(model_path)
        try:
            self.model = mujoco.MjModel.from_xml_path(str(self.model_path))
        except ValueError as exc:
            raise KinematicsError(f"kinematics.model {str(model_path)!r}: {exc}") from exc
        self.data = mujoco.MjData(self.model)
        self.chains = chains
        qpos_adr, base_ids, eef_ids = [], [], []
        for chain in chains:
            adr = []
            for joint in chain.joint_names:
                jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, joint)
                if jid < 0:
                    raise KinematicsError(
                        f"kinematics: joint {joint!r} not found in {self.model_path.name}"
                    )
                adr.append(self.model.jnt_qposadr[jid])
            qpos_adr.append(np.asarray(adr, dtype=np.intp))
            for body, out in ((chain.base_body, base_ids), (chain.eef_body, eef_ids)):
                bid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, body)
                if bid < 0:
                    raise KinematicsError(
                        f"kinematics: body {body!r} not found in {self.model_path.name}"
                    )
                out.append(bid)
        self._qpos_adr = qpos_adr
        self._qpos_adr_flat = np.concatenate(qpos_adr) if qpos_adr else np.zeros(0, np.intp)
        self._base_ids = np.asarray(base_ids, dtype=np.intp)
        self._eef_ids = np.asarray(eef_ids, dtype=np.intp)
        # MjData's arrays are views of its buffers: fetch them once, not per call.
        self._qpos = self.data.qpos
        self._xpos = self.data.xpos
        self._xmat = self.data.xmat.reshape(-1, 3, 3)
        self._rhs = np.empty((len(chains), 3, 3))
        self._lock = threading.Lock()

    def forward_pos_rot6d(self, joint_positions: np.ndarray) -> np.ndarray:
        """All chains' joint positions, concatenated in ``chains`` order -> (n * 9,): the
        end-effector position (3) and 6D rotation ``[R00, R10, R20, R01, R11, R21]``, in each
        arm's base frame. The hot path of the state mapping."""
        with self._lock:
            self._qpos[self._qpos_adr_flat] = joint_positions
            self._mujoco.mj_kinematics(self.model, self.data)
            base_rot_t = self._xmat[self._base_ids].transpose(0, 2, 1)
            rhs = self._rhs
            rhs[:, :, 0] = self._xpos[self._eef_ids] - self._xpos[self._base_ids]
            rhs[:, :, 1:] = self._xmat[self._eef_ids][:, :, :2]
            # Columns of base^T @ [dp | r0 | r1], read column by column: position, then 6D.
            return np.matmul(base_rot_t, rhs).transpose(0, 2, 1).reshape(-1)

    def forward(self, joint_positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Positions per chain (in ``chains`` order) -> ((n, 3) positions, (n, 3, 3) rotations).

        Both are the end-effector body's pose in the arm's base body frame.
        """
        with self._lock:
            for adr, q in zip(self._qpos_adr, joint_positions):
                self._qpos[adr] = q
            self._mujoco.mj_kinematics(self.model, self.data)
            base_rot_t = self._xmat[self._base_ids].transpose(0, 2, 1)
            eef_pos = self._xpos[self._eef_ids] - self._xpos[self._base_ids]
            pos = np.matmul(base_rot_t, eef_pos[..., None])[..., 0]
            return pos, np.matmul(base_rot_t, self._xmat[self._eef_ids])
