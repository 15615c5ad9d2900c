"""``embodiments``: list the shipped embodiments, or print one robot's slot map and topics.

    embodiments list
    embodiments show aloha_sim
    embodiments show ./my_robot.yaml [--json]

What a user checks when porting a robot: which driver joint lands in which unified slot, with
which limits, and where states come from and commands go.
"""

from __future__ import annotations

import argparse
import json
import sys

from unified_action_space.embodiment import (
    EmbodimentConfigError,
    list_embodiments,
    load_embodiment,
    resolve_embodiment_path,
)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.5g}"


def show_text(name_or_path: str, kinematics: bool = True) -> str:
    emb = load_embodiment(name_or_path, kinematics=kinematics)
    lines = [
        f"embodiment: {emb.name}",
        f"file: {emb.source}",
        f"description: {emb.description}",
        f"control frequency: {emb.control_frequency:g} Hz",
        f"kinematics: {emb.kinematics.model_path if emb.kinematics else 'none (EEF slots masked)'}",
        "",
    ]
    for arm in emb.arms:
        lines.append(f"arm {arm.name}:")
        for topic in arm.joint_state_topics:
            lines.append(f"  joint states: {topic} (sensor_msgs/msg/JointState)")
        for out in arm.command_outputs:
            extra = [f"{out.name!r}"] if out.name else []
            extra += ["streamed"] if out.stream else []
            extra += [f"controller {out.controller}"] if out.controller else []
            extra += [f"max_effort {out.max_effort:g} N"] if out.max_effort else []
            note = f" [{', '.join(extra)}]" if extra else ""
            lines.append(f"  commands:     {out.topic} ({out.type}): "
                         f"{', '.join(out.joints)}{note}")  # fmt: skip
        if arm.enable_topic:
            lines.append(f"  enable:       {arm.enable_topic} (std_msgs/msg/Bool true)")
    lines += ["", f"{'slot':>4}  {'slot name':<26} {'arm':<5} {'joint':<38} {'quantity':<8} "
                  f"{'lower':>9} {'upper':>9}  slot holds (limits in driver units)"]  # fmt: skip
    for row in emb.slot_table():
        flag = " (cmd)" if row["commanded"] else ""
        lines.append(
            f"{row['slot']:>4}  {row['slot_name']:<26} {row['arm']:<5} {row['joint']:<38} "
            f"{row['quantity']:<8} {_fmt(row['lower']):>9} {_fmt(row['upper']):>9}  "
            f"{row['unit']}{flag}"
        )
    lines += [
        "",
        f"state slots ({int(emb.state_mask.sum())}): {emb.state_slots.tolist()}",
        f"action slots ({len(emb.action_slots)}): {emb.action_slots.tolist()}",
    ]
    return "\n".join(lines)


def show_json(name_or_path: str, kinematics: bool = True) -> str:
    emb = load_embodiment(name_or_path, kinematics=kinematics)
    data = {
        "name": emb.name,
        "file": emb.source,
        "control_frequency": emb.control_frequency,
        "has_kinematics": emb.has_kinematics,
        "arms": [
            {
                "name": a.name,
                "joint_state_topic": a.joint_state_topic,
                "command_topic": a.command_topic,
                "command_type": a.command_type,
                "command_joint_names": list(a.command_joint_names),
                "joint_state_topics": list(a.joint_state_topics),
                "command_outputs": [
                    {"topic": o.topic, "type": o.type, "joints": list(o.joints)}
                    for o in a.command_outputs
                ],
                "enable_topic": a.enable_topic,
            }
            for a in emb.arms
        ],
        "slots": emb.slot_table(),
        "state_slots": emb.state_slots.tolist(),
        "action_slots": emb.action_slots.tolist(),
        "position_limits_unified": emb.position_limits_unified.tolist(),
        "max_velocity_unified": emb.max_velocity_unified.tolist(),
    }
    return json.dumps(data, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embodiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="shipped embodiments and their files")
    show = sub.add_parser("show", help="one embodiment's slot map, limits and topics")
    show.add_argument("embodiment", help="shipped name or path to a YAML")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--no-kinematics", action="store_true",
                      help="do not load the FK model (EEF slots shown as masked)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in list_embodiments():
                print(f"{name:<12} {resolve_embodiment_path(name)}")
        else:
            render = show_json if args.json else show_text
            print(render(args.embodiment, kinematics=not args.no_kinematics))
    except EmbodimentConfigError as exc:
        print(f"embodiments: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
