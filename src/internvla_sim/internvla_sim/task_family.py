"""A procedural family of table-top tasks for both simulated robots, fully determined by (robot, seed).

One seed draws, with ``numpy.random.default_rng(seed)``: a skill and one of its phrasings (a *template*),
the target object (shape, colour, size, mass), a container when the skill needs one, distractors, a
non-overlapping layout inside the robot's reach, and the scene's look (table colour, lights, camera).
Every task has a geometric success check on object positions (base frame, metres).

Skills (what :class:`internvla_sim.expert.ScriptedExpert` can do):

- ``pick``: lift the target at least :data:`LIFT_SUCCESS` above where it started;
- ``put_on`` (plate, tray) / ``put_in`` (bowl, tray): the target rests inside the container's rim;
- ``push_left`` / ``push_right`` / ``push_forward`` / ``push_backward``: the target slides at least
  :data:`PUSH_SUCCESS` in that direction and stays on the table ("left" = +y, the robot's left;
  "forward" = +x, away from the robot);
- ``move_next_to``: the target rests within :data:`NEXT_TO_GAP` of a named reference object.

The three named tasks ``red_on_plate``, ``pick_green`` and ``push_blue_left`` are members of the family
with their own fixed scene (plate + red, green, blue 4 cm blocks), instructions and seeded layouts
(``tasks.random_layout``); :func:`resolve_task` gives either kind.

Randomisation ranges are the module constants below (sizes in metres, masses in kg).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .scene import (
    BLOCK_COLOURS,
    BLOCK_HALF,
    PLATE_RADIUS,
    Primitive,
    RobotScene,
    SceneLook,
    SceneObject,
    camera_look_at,
    look_at_xyaxes,
    robot_scene,
)
from .tasks import TASKS, random_layout

# ------------------------------------------------------------------------------------ randomisation
COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.1, 1.0),
    "green": (0.1, 0.7, 0.2, 1.0),
    "blue": (0.12, 0.3, 0.85, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0),
    "orange": (0.95, 0.5, 0.05, 1.0),
    "purple": (0.5, 0.15, 0.7, 1.0),
    "pink": (0.95, 0.45, 0.7, 1.0),
    "cyan": (0.1, 0.8, 0.85, 1.0),
}
SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "box": ("block", "cube"),
    "cylinder": ("cylinder",),
    "sphere": ("ball",),
}
# Shapes the expert carries (pick, put, move next to), with the scene's elliptic friction cones. The
# Panda's pads let an upright cylinder tilt out of the grasp (3/8 picks), so it only pushes cylinders.
GRASP_SKILLS = ("pick", "put_on", "put_in", "move_next_to")
GRASPABLE_SHAPES = {"franka": ("box", "sphere"), "widowx": ("box", "cylinder", "sphere")}
PUSHABLE_SHAPES = ("box", "cylinder")  # a pushed ball rolls off the finger in any direction
# Half extents: every object is 3.2-4.6 cm across, inside both grippers' opening (Panda 8 cm, WidowX 7 cm)
BOX_HALF_RANGE = (0.016, 0.023)
CYLINDER_RADIUS_RANGE = (0.016, 0.022)
CYLINDER_HALF_HEIGHT_RANGE = (0.02, 0.03)
SPHERE_RADIUS_RANGE = (0.017, 0.022)
MASS_RANGE = (0.02, 0.06)
OBJECT_YAW_RANGE = (-math.pi / 12, math.pi / 12)  # boxes only (the gripper keeps its yaw)
DISTRACTORS_RANGE = (1, 2)  # movable distractors besides the target (and the reference object)
CONTAINER_DISTRACTOR_P = 0.4  # chance of an unused container on the table when the skill needs none
# Containers: plate (disc), bowl (disc + ring of 12 wall boxes), tray (slab + 4 walls)
PLATE_RADIUS_RANGE = (0.06, 0.075)
BOWL_RADIUS_RANGE = (0.065, 0.075)
BOWL_WALL_HEIGHT = 0.03
TRAY_HALF_RANGE = ((0.065, 0.085), (0.065, 0.085))
TRAY_WALL_HEIGHT = 0.02
CONTAINER_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "white": (0.95, 0.95, 0.95, 1.0),
    "grey": (0.55, 0.55, 0.58, 1.0),
    "brown": (0.45, 0.3, 0.18, 1.0),
    "black": (0.12, 0.12, 0.12, 1.0),
}
CONTAINER_FLOOR = 0.008  # top of every container's floor above the table
# Look
# table colour = (L + w, L + w / 3, L - w / 2): greys (w = 0) to warm woods, never as saturated as an object
TABLE_LIGHTNESS_RANGE = (0.3, 0.65)
TABLE_WARMTH_RANGE = (0.0, 0.18)
LIGHT_DIFFUSE_RANGE = (0.55, 1.0)
FILL_DIFFUSE_RANGE = (0.2, 0.5)
LIGHT_OFFSET_RANGE = 0.4  # top light xy offset from the table centre, each axis ±[m]
CAMERA_POS_JITTER = (0.08, 0.1, 0.06)  # third-person camera position, each axis ±[m]
CAMERA_LOOK_JITTER = 0.04  # where it looks (on the table plane), each axis ±[m]
CAMERA_FOVY_JITTER = 3.0  # ±degrees
# Success thresholds and expert geometry
LIFT_SUCCESS = 0.06
PUSH_SUCCESS = 0.08
PUSH_DISTANCE = 0.18  # the expert's finger travel (the object moves ~ PUSH_DISTANCE - standoff)
PUSH_STANDOFF = 0.04  # gap between the fingers and the object before the push
NEXT_TO_GAP = 0.06  # max free space between target and reference for "next to"
PLACE_GAP = 0.025  # free space the expert leaves between target and reference
CLEARANCE = 0.03  # minimum free space between footprints in a layout

SKILLS = (
    "pick",
    "put_on",
    "put_in",
    "push_left",
    "push_right",
    "push_forward",
    "push_backward",
    "move_next_to",
)
PUSH_DIRECTIONS = {
    "push_left": (0.0, 1.0),
    "push_right": (0.0, -1.0),
    "push_forward": (1.0, 0.0),
    "push_backward": (-1.0, 0.0),
}
_DIRECTION_WORDS = {  # (short, adverb, long)
    "push_left": ("to the left", "left", "leftward"),
    "push_right": ("to the right", "right", "rightward"),
    "push_forward": ("forward", "away from the robot", "forwards"),
    "push_backward": ("backward", "toward the robot", "back"),
}
_PHRASINGS: dict[str, tuple[str, ...]] = {
    "pick": (
        "pick up the {object}",
        "grab the {object}",
        "lift the {object}",
        "pick the {object} up",
        "take the {object}",
        "raise the {object}",
        "grasp the {object} and lift it",
        "lift up the {object}",
        "get the {object}",
        "hold the {object} up",
        "pick up the {object} from the table",
    ),
    "put_on": (
        "put the {object} on the {container}",
        "place the {object} on the {container}",
        "set the {object} on the {container}",
        "move the {object} onto the {container}",
        "put the {object} onto the {container}",
        "transfer the {object} to the {container}",
        "pick up the {object} and put it on the {container}",
        "place the {object} on top of the {container}",
    ),
    "put_in": (
        "put the {object} in the {container}",
        "place the {object} into the {container}",
        "drop the {object} into the {container}",
        "put the {object} inside the {container}",
        "move the {object} into the {container}",
        "store the {object} in the {container}",
        "pick up the {object} and place it in the {container}",
    ),
    "move_next_to": (
        "move the {object} next to the {reference}",
        "put the {object} next to the {reference}",
        "place the {object} beside the {reference}",
        "put the {object} by the {reference}",
        "set the {object} near the {reference}",
        "bring the {object} next to the {reference}",
    ),
}
for _skill, (_short, _adverb, _long) in _DIRECTION_WORDS.items():
    _PHRASINGS[_skill] = (
        f"push the {{object}} {_short}",
        f"slide the {{object}} {_short}",
        f"shove the {{object}} {_adverb}",
        f"push the {{object}} {_long}",
        f"nudge the {{object}} {_short}",
    )
CONTAINERS_FOR = {"put_on": ("plate", "tray"), "put_in": ("bowl", "tray")}


@dataclass(frozen=True)
class Template:
    id: str  # "<skill>/<index>", or the name of a named task
    skill: str
    text: str  # with {object}, {container}, {reference} fields

    def render(self, object: str, container: str = "", reference: str = "") -> str:
        return self.text.format(object=object, container=container, reference=reference)


TEMPLATES: dict[str, Template] = {
    f"{skill}/{i}": Template(f"{skill}/{i}", skill, text)
    for skill in SKILLS
    for i, text in enumerate(_PHRASINGS[skill])
}
"""The procedural templates, one per distinct (skill, phrasing)."""
NAMED_TEMPLATES: dict[str, Template] = {
    "red_on_plate": Template("red_on_plate", "put_on", TASKS["red_on_plate"].instruction),
    "pick_green": Template("pick_green", "pick", TASKS["pick_green"].instruction),
    "push_blue_left": Template("push_blue_left", "push_left", TASKS["push_blue_left"].instruction),
}
FAMILY = "family"  # SimEnv(task=FAMILY): the procedural task of the seed


class InfeasibleTaskError(RuntimeError):
    """The seed's draw has no valid layout (the episode is dropped and counted, never retried)."""


@dataclass
class FamilyTask:
    """One drawn task: what SimEnv builds and checks, what the expert solves, what the labels name."""

    name: str  # template id
    skill: str
    instruction: str
    target: str  # body name of the object the task is about
    objects: tuple[SceneObject, ...]  # every body on the table (containers included)
    descriptions: dict[str, str]  # body name -> words used in instructions ("red block")
    check: Callable[[dict, dict], bool]
    look: SceneLook | None = None  # None: the fixed look of the named tasks
    container: str | None = None  # put_on / put_in: the container; move_next_to: the reference object
    place_xyz: tuple[float, float, float] | None = None  # where the target should end up (its centre)
    direction: tuple[float, float] | None = None  # push skills: unit xy direction
    named: bool = False  # one of the named tasks (fixed scene, layout by tasks.random_layout)
    metadata: dict = field(default_factory=dict)  # JSON-serialisable description of the draw

    def success(self, now: dict[str, np.ndarray], start: dict[str, np.ndarray]) -> bool:
        return bool(self.check(now, start))

    def object(self, name: str) -> SceneObject:
        return next(o for o in self.objects if o.name == name)


# ------------------------------------------------------------------------------------ geometry helpers
def half_height(obj: SceneObject) -> float:
    """Highest point of an object above its body origin (its centre for the movable primitives)."""
    tops = []
    for p in obj.primitives:
        h = p.size[0] if p.kind == "sphere" else p.size[1] if p.kind == "cylinder" else p.size[2]
        tops.append(p.pos[2] + h)
    return max(tops)


def footprint(obj: SceneObject) -> float:
    """Radius of a circle around the body origin that holds the object's xy extent."""
    r = 0.0
    for p in obj.primitives:
        extent = math.hypot(p.size[0], p.size[1]) if p.kind == "box" else p.size[0]
        r = max(r, math.hypot(p.pos[0], p.pos[1]) + extent)
    return r


def _inside_container(xy: np.ndarray, container: SceneObject, meta: dict, margin: float) -> bool:
    d = xy - np.asarray(container.pos[:2])
    if meta["kind"] == "tray":
        return bool(abs(d[0]) < meta["half"][0] - margin and abs(d[1]) < meta["half"][1] - margin)
    return bool(np.linalg.norm(d) < meta["radius"] - margin)


# ------------------------------------------------------------------------------------ success checks
def _check_lifted(now, start, target):
    return now[target][2] - start[target][2] > LIFT_SUCCESS


def _check_in_container(now, start, target, container, meta, target_half):
    pos = now[target]
    return _inside_container(pos[:2], container, meta, 0.01) and pos[2] < CONTAINER_FLOOR + target_half + 0.02


def _check_pushed(now, start, target, direction):
    moved = now[target][:2] - start[target][:2]
    return float(moved @ np.asarray(direction)) > PUSH_SUCCESS and now[target][2] < start[target][2] + 0.01


def _check_next_to(now, start, target, reference, max_distance):
    gap = float(np.linalg.norm(now[target][:2] - now[reference][:2]))
    moved = float(np.linalg.norm(now[target][:2] - start[target][:2]))
    resting = now[target][2] < start[target][2] + 0.01
    return gap < max_distance and moved > 0.03 and resting


# ------------------------------------------------------------------------------------ drawing
def _draw_object(rng: np.random.Generator, name: str, colour: str, shape: str) -> SceneObject:
    if shape == "box":
        h = rng.uniform(*BOX_HALF_RANGE)
        prim, z, yaw = Primitive("box", (h, h, h)), h, rng.uniform(*OBJECT_YAW_RANGE)
    elif shape == "cylinder":
        r, h = rng.uniform(*CYLINDER_RADIUS_RANGE), rng.uniform(*CYLINDER_HALF_HEIGHT_RANGE)
        prim, z, yaw = Primitive("cylinder", (r, h, 0.0)), h, 0.0
    else:
        r = rng.uniform(*SPHERE_RADIUS_RANGE)
        prim, z, yaw = Primitive("sphere", (r, 0.0, 0.0)), r, 0.0
    mass = rng.uniform(*MASS_RANGE)
    return SceneObject(name, (prim,), COLOURS[colour], (0.0, 0.0, z), yaw, True, float(mass))


def _draw_container(rng: np.random.Generator, kind: str, colour: str) -> tuple[SceneObject, dict]:
    base = CONTAINER_FLOOR / 2
    if kind == "plate":
        r = rng.uniform(*PLATE_RADIUS_RANGE)
        prims = (Primitive("cylinder", (r, base, 0.0), (0.0, 0.0, base)),)
        meta = {"kind": kind, "radius": float(r), "rim": CONTAINER_FLOOR}
    elif kind == "bowl":
        r = rng.uniform(*BOWL_RADIUS_RANGE)
        n, wall = 12, 0.004
        half_len = (r + wall) * math.tan(math.pi / n) * 1.05
        prims = [Primitive("cylinder", (r, base, 0.0), (0.0, 0.0, base))]
        for i in range(n):
            a = 2 * math.pi * i / n
            prims.append(
                Primitive(
                    "box",
                    (wall, half_len, BOWL_WALL_HEIGHT / 2),
                    (r * math.cos(a), r * math.sin(a), CONTAINER_FLOOR + BOWL_WALL_HEIGHT / 2),
                    (math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)),
                )
            )
        prims = tuple(prims)
        meta = {"kind": kind, "radius": float(r - wall), "rim": CONTAINER_FLOOR + BOWL_WALL_HEIGHT}
    else:
        hx, hy = rng.uniform(*TRAY_HALF_RANGE[0]), rng.uniform(*TRAY_HALF_RANGE[1])
        w, hz, z = 0.004, TRAY_WALL_HEIGHT / 2, CONTAINER_FLOOR + TRAY_WALL_HEIGHT / 2
        prims = (
            Primitive("box", (hx, hy, base), (0.0, 0.0, base)),
            Primitive("box", (w, hy, hz), (hx, 0.0, z)),
            Primitive("box", (w, hy, hz), (-hx, 0.0, z)),
            Primitive("box", (hx, w, hz), (0.0, hy, z)),
            Primitive("box", (hx, w, hz), (0.0, -hy, z)),
        )
        meta = {
            "kind": kind,
            "half": [float(hx - w), float(hy - w)],
            "rim": CONTAINER_FLOOR + TRAY_WALL_HEIGHT,
        }
    return SceneObject("container", prims, CONTAINER_COLOURS[colour], (0.0, 0.0, 0.0), 0.0, False), meta


def _draw_look(rng: np.random.Generator, scene: RobotScene) -> SceneLook:
    lightness, warmth = rng.uniform(*TABLE_LIGHTNESS_RANGE), rng.uniform(*TABLE_WARMTH_RANGE)
    table = (float(lightness + warmth), float(lightness + warmth / 3), float(lightness - warmth / 2), 1.0)
    pos = np.array(scene.camera_pos) + rng.uniform(-1, 1, 3) * np.array(CAMERA_POS_JITTER)
    target = camera_look_at(scene) + np.append(rng.uniform(-1, 1, 2) * CAMERA_LOOK_JITTER, 0.0)
    return SceneLook(
        table_rgba=table,
        light_diffuse=float(rng.uniform(*LIGHT_DIFFUSE_RANGE)),
        fill_diffuse=float(rng.uniform(*FILL_DIFFUSE_RANGE)),
        light_offset=tuple(float(v) for v in rng.uniform(-LIGHT_OFFSET_RANGE, LIGHT_OFFSET_RANGE, 2)),
        camera_pos=tuple(float(v) for v in pos),
        camera_xyaxes=tuple(float(v) for v in look_at_xyaxes(pos, target)),
        camera_fovy=float(scene.camera_fovy + rng.uniform(-CAMERA_FOVY_JITTER, CAMERA_FOVY_JITTER)),
    )


def _place(obj: SceneObject, xy) -> SceneObject:
    return SceneObject(obj.name, obj.primitives, obj.rgba, (float(xy[0]), float(xy[1]), obj.pos[2]), obj.yaw,
                       obj.movable, obj.mass)  # fmt: skip


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((p - a) @ ab / max(ab @ ab, 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def sample_task(robot: str, seed: int, templates: Sequence[str] | None = None) -> FamilyTask:
    """The procedural task of ``seed`` for ``robot`` (raises :class:`InfeasibleTaskError` if no layout fits).

    ``templates`` restricts the draw to those template ids (or skills). The draw: a skill group uniformly
    (pick, put_on, put_in, push, move_next_to), the push direction uniformly, then the phrasing uniformly
    among the skill's allowed templates.
    """
    scene = robot_scene(robot)
    rng = np.random.default_rng(seed)
    allowed = list(TEMPLATES.values())
    if templates:
        wanted = set(templates)
        allowed = [t for t in allowed if t.id in wanted or t.skill in wanted]
        if not allowed:
            raise ValueError(f"no family template among {sorted(wanted)}; known: {sorted(TEMPLATES)}")
    groups = sorted(
        {_group(t.skill) for t in allowed}, key=lambda g: SKILLS.index(g if g != "push" else "push_left")
    )
    group = groups[int(rng.integers(len(groups)))]
    skills = sorted({t.skill for t in allowed if _group(t.skill) == group}, key=SKILLS.index)
    skill = skills[int(rng.integers(len(skills)))]
    choices = [t for t in allowed if t.skill == skill]
    template = choices[int(rng.integers(len(choices)))]
    look = _draw_look(rng, scene)

    # objects: (colour, shape) pairs are unique so every description names exactly one object
    n_distractors = int(rng.integers(DISTRACTORS_RANGE[0], DISTRACTORS_RANGE[1] + 1))
    n_movable = 1 + n_distractors + (skill == "move_next_to")
    colours = list(COLOURS)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n_movable:
        shapes = ("box", "cylinder", "sphere")
        if not pairs:
            shapes = GRASPABLE_SHAPES[robot] if skill in GRASP_SKILLS else PUSHABLE_SHAPES
        if len(pairs) == 1 and skill == "move_next_to":
            shapes = ("box", "cylinder")  # a ball rolls away when nudged: not a reference
        pair = (colours[int(rng.integers(len(colours)))], shapes[int(rng.integers(len(shapes)))])
        if pair not in pairs:
            pairs.append(pair)
    objects = [_draw_object(rng, f"object_{i}", c, s) for i, (c, s) in enumerate(pairs)]
    descriptions = {
        o.name: f"{c} {SHAPE_NOUNS[s][int(rng.integers(len(SHAPE_NOUNS[s])))]}"
        for o, (c, s) in zip(objects, pairs)
    }
    container_meta = None
    needs_container = skill in CONTAINERS_FOR
    if needs_container or rng.uniform() < CONTAINER_DISTRACTOR_P:
        kinds = CONTAINERS_FOR.get(skill, ("plate", "bowl", "tray"))
        kind = kinds[int(rng.integers(len(kinds)))]
        colour = list(CONTAINER_COLOURS)[int(rng.integers(len(CONTAINER_COLOURS)))]
        container, container_meta = _draw_container(rng, kind, colour)
        descriptions["container"] = kind
        objects.insert(0, container)

    # layout: the biggest first; push skills keep their corridor and goal free and inside the table area
    x_range, y_range = scene.layout_x, scene.layout_y
    direction = np.array(PUSH_DIRECTIONS.get(skill, (0.0, 0.0)))
    placed: dict[str, np.ndarray] = {}
    keepout: list[tuple[np.ndarray, np.ndarray]] = []
    target = "object_0"
    for obj in objects:
        radius = footprint(obj)
        low = np.array([x_range[0], y_range[0]])
        high = np.array([x_range[1], y_range[1]])
        if obj.name == target and skill.startswith("push_"):
            travel = PUSH_DISTANCE - PUSH_STANDOFF - radius
            low = np.where(direction < 0, low + travel * -direction, low)
            high = np.where(direction > 0, high - travel * direction, high)
        for _ in range(300):
            xy = rng.uniform(low, high)
            clear = all(
                np.linalg.norm(xy - placed[o.name]) > radius + footprint(o) + CLEARANCE
                for o in objects
                if o.name in placed
            )
            corridor = None
            if obj.name == target and skill.startswith("push_"):
                # the fingers' path and the pushed object's sweep up to its goal, kept clear
                behind = xy - direction * (radius + PUSH_STANDOFF)
                corridor = (behind, xy + direction * (PUSH_DISTANCE - PUSH_STANDOFF))
                clear = clear and all(
                    _segment_distance(placed[o.name], *corridor) > radius + footprint(o) + 0.02
                    for o in objects
                    if o.name in placed
                )
            clear = clear and all(_segment_distance(xy, a, b) > radius + 0.05 for a, b in keepout)
            if skill == "move_next_to" and obj.name == "object_1" and target in placed:
                clear = clear and np.linalg.norm(xy - placed[target]) > 0.15  # not next to it already
            if clear:
                placed[obj.name] = xy
                if corridor is not None:
                    keepout.append(corridor)
                break
        else:
            raise InfeasibleTaskError(f"no room for {obj.name} ({descriptions.get(obj.name, obj.name)})")
    objects = [_place(o, placed[o.name]) for o in objects]
    by_name = {o.name: o for o in objects}
    tgt = by_name[target]
    t_half = half_height(tgt)

    container_name = place_xyz = None
    metadata: dict = {}
    if needs_container:
        container_name = "container"
        c = by_name["container"]
        place_xyz = (c.pos[0], c.pos[1], CONTAINER_FLOOR + t_half)
        check = _bind(
            _check_in_container, target=target, container=c, meta=container_meta, target_half=t_half
        )
    elif skill == "pick":
        check = _bind(_check_lifted, target=target)
        place_xyz = None
    elif skill.startswith("push_"):
        goal = np.asarray(tgt.pos[:2]) + direction * (PUSH_DISTANCE - PUSH_STANDOFF - footprint(tgt))
        place_xyz = (float(goal[0]), float(goal[1]), tgt.pos[2])
        check = _bind(_check_pushed, target=target, direction=tuple(direction))
    else:  # move_next_to
        container_name = "object_1"
        ref = by_name["object_1"]
        distance = footprint(ref) + footprint(tgt) + PLACE_GAP
        spot = _free_spot_next_to(rng, ref, tgt, distance, [o for o in objects if o.name not in (target, ref.name)],
                                  x_range, y_range)  # fmt: skip
        place_xyz = (float(spot[0]), float(spot[1]), tgt.pos[2])
        max_distance = footprint(ref) + footprint(tgt) + NEXT_TO_GAP
        check = _bind(_check_next_to, target=target, reference="object_1", max_distance=max_distance)
        metadata["next_to_max_distance"] = max_distance
    instruction = template.render(
        descriptions[target],
        descriptions.get("container", ""),
        descriptions.get("object_1", ""),
    )
    metadata.update(
        {
            "template": template.id,
            "skill": skill,
            "template_text": template.text,
            "objects": [_describe(o, descriptions[o.name]) for o in objects],
            "container": container_meta,
            "place_xyz": list(place_xyz) if place_xyz else None,
            "direction": direction.tolist() if skill.startswith("push_") else None,
            "look": {
                "table_rgba": list(look.table_rgba),
                "light_diffuse": look.light_diffuse,
                "fill_diffuse": look.fill_diffuse,
                "light_offset": list(look.light_offset),
                "camera_pos": list(look.camera_pos),
                "camera_xyaxes": list(look.camera_xyaxes),
                "camera_fovy": look.camera_fovy,
            },
        }
    )
    return FamilyTask(
        name=template.id,
        skill=skill,
        instruction=instruction,
        target=target,
        objects=tuple(objects),
        descriptions=descriptions,
        check=check,
        look=look,
        container=container_name,
        place_xyz=place_xyz,
        direction=tuple(float(v) for v in direction) if skill.startswith("push_") else None,
        metadata=metadata,
    )


def _group(skill: str) -> str:
    return "push" if skill.startswith("push_") else skill


def _free_spot_next_to(rng, ref, tgt, distance, others, x_range, y_range) -> np.ndarray:
    """A spot ``distance`` from ``ref`` (one of 8 directions, order drawn) clear of ``others``, in reach."""
    angles = rng.permutation(8) * (math.pi / 4)
    centre = np.asarray(ref.pos[:2])
    for a in angles:
        spot = centre + distance * np.array([math.cos(a), math.sin(a)])
        inside = (
            x_range[0] - 0.02 <= spot[0] <= x_range[1] + 0.02
            and y_range[0] - 0.02 <= spot[1] <= y_range[1] + 0.02
        )
        clear = all(np.linalg.norm(spot - o.pos[:2]) > footprint(o) + footprint(tgt) + 0.015 for o in others)
        if inside and clear:
            return spot
    raise InfeasibleTaskError("no free spot next to the reference object")


def _bind(fn, **kwargs) -> Callable[[dict, dict], bool]:
    def check(now, start):
        return bool(fn(now, start, **kwargs))

    return check


def _describe(obj: SceneObject, words: str) -> dict:
    return {
        "name": obj.name,
        "description": words,
        "shapes": [{"kind": p.kind, "size": list(p.size), "pos": list(p.pos)} for p in obj.primitives],
        "rgba": list(obj.rgba),
        "pos": list(obj.pos),
        "yaw": obj.yaw,
        "movable": obj.movable,
        "mass": obj.mass if obj.movable else None,
    }


# ------------------------------------------------------------------------------------ named tasks
NAMED_OBJECTS = ("plate", "red_block", "green_block", "blue_block")


def named_task(name: str, robot: str, seed: int | None) -> FamilyTask:
    """A named task (``tasks.TASKS``) as a family member: its fixed scene with the layout of ``seed``
    (``tasks.random_layout`` on ``default_rng(seed)``, as SimEnv has always placed it)."""
    task = TASKS[name]
    scene = robot_scene(robot)
    layout = random_layout(np.random.default_rng(seed), scene.layout_x, scene.layout_y)
    block = Primitive("box", (BLOCK_HALF,) * 3)
    objects = [
        SceneObject(
            "plate",
            (Primitive("cylinder", (PLATE_RADIUS, 0.004, 0.0), (0.0, 0.0, 0.004)),),
            (0.95, 0.95, 0.95, 1.0),
            (*layout["plate"], 0.0),
            movable=False,
        )
    ]
    for colour in BLOCK_COLOURS:
        objects.append(
            SceneObject(
                f"{colour}_block", (block,), BLOCK_COLOURS[colour], (*layout[f"{colour}_block"], BLOCK_HALF)
            )
        )
    template = NAMED_TEMPLATES[name]
    objects_t = tuple(objects)
    by_name = {o.name: o for o in objects_t}
    tgt = by_name[task.target]
    container = place_xyz = direction = None
    if name == "red_on_plate":
        container = "plate"
        place_xyz = (*by_name["plate"].pos[:2], CONTAINER_FLOOR + BLOCK_HALF)
    elif name == "push_blue_left":
        direction = PUSH_DIRECTIONS["push_left"]
        place_xyz = (tgt.pos[0], tgt.pos[1] + PUSH_DISTANCE - 0.06, BLOCK_HALF)
    descriptions = {f"{c}_block": f"{c} block" for c in BLOCK_COLOURS} | {"plate": "plate"}
    return FamilyTask(
        name=name,
        skill=template.skill,
        instruction=task.instruction,
        target=task.target,
        objects=objects_t,
        descriptions=descriptions,
        check=task.success,
        look=None,
        container=container,
        place_xyz=place_xyz,
        direction=direction,
        named=True,
        metadata={
            "template": name,
            "skill": template.skill,
            "template_text": template.text,
            "objects": [_describe(o, descriptions[o.name]) for o in objects_t],
            "container": {"kind": "plate", "radius": PLATE_RADIUS, "rim": CONTAINER_FLOOR},
            "place_xyz": list(place_xyz) if place_xyz else None,
            "direction": list(direction) if direction else None,
            "look": None,
        },
    )


def resolve_task(task: str | FamilyTask, robot: str, seed: int | None) -> FamilyTask:
    """A named task, :data:`FAMILY` (the seed's procedural task), a template id / skill (the seed's task
    drawn among that template / skill), or a ready FamilyTask."""
    if isinstance(task, FamilyTask):
        return task
    if task in TASKS:
        return named_task(task, robot, seed)
    if task == FAMILY:
        return sample_task(robot, 0 if seed is None else seed)
    if task in TEMPLATES or task in SKILLS:
        return sample_task(robot, 0 if seed is None else seed, [task])
    known = sorted(TASKS) + [FAMILY, "<template id>", "<skill>"]
    raise KeyError(f"unknown task '{task}'; known: {known}")
