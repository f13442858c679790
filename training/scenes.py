"""Procedurally generated, captioned training data for the mini models: scenes of coloured
shapes (FLUX-mini) and short clips of a moving shape (WAN-mini).

Every sample is a pure function of its index and the dataset seed, so a dataset needs no
storage and a resumed run sees the same samples.
"""

import random

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.11, "large": 0.2}  # radius as a fraction of the image side
RELATIONS = ("above", "below", "left of", "right of")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SUPERSAMPLE = 4


def vocabulary() -> list[str]:
    """Every word a caption can use, in a fixed order."""
    words = ["a", "on", "background", "moving", "of"]
    words += list(COLORS) + list(SHAPES) + list(SIZES)
    words += ["above", "below", "left", "right", "up", "down"]
    return words


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, color) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif shape == "square":
        s = r * 0.9
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=color)
    else:
        draw.polygon([(cx, cy - r), (cx - r * 1.1, cy + r * 0.8), (cx + r * 1.1, cy + r * 0.8)],
                     fill=color)


def _render(size: int, background: str, objects) -> np.ndarray:
    """Draws `objects` (shape, colour, centre x, centre y, radius; in pixels of `size`) on a
    flat background, anti-aliased by supersampling. Returns HxWx3 uint8."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), COLORS[background])
    draw = ImageDraw.Draw(image)
    for shape, color, cx, cy, r in objects:
        _draw(draw, shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, r * SUPERSAMPLE, COLORS[color])
    return np.asarray(image.resize((size, size), Image.BOX))


def _pick_colors(rng: random.Random, count: int):
    names = list(COLORS)
    background = rng.choice(names)
    others = [c for c in names if c != background]
    return background, [rng.choice(others) for _ in range(count)]


def scene(index: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, str]:
    """Scene `index`: one shape, or two shapes in a spatial relation, on a flat background."""
    rng = random.Random(seed * 1_000_003 + index)
    background, colors = _pick_colors(rng, 2)
    sizes = [rng.choice(list(SIZES)) for _ in range(2)]
    shapes = [rng.choice(SHAPES) for _ in range(2)]
    radii = [SIZES[s] * size for s in sizes]
    if rng.random() < 0.4:
        r = radii[0]
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        image = _render(size, background, [(shapes[0], colors[0], cx, cy, r)])
        return image, f"a {sizes[0]} {colors[0]} {shapes[0]} on a {background} background"
    relation = rng.choice(RELATIONS)
    ra, rb = radii
    # Place A and B along the relation's axis with a gap, jittered across it.
    along = ra + rb + rng.uniform(0.05, 0.2) * size
    if relation in ("above", "below"):
        ax = rng.uniform(ra, size - ra)
        bx = float(np.clip(ax + rng.uniform(-0.1, 0.1) * size, rb, size - rb))
        top = rng.uniform(min(ra, rb), max(size - along - max(ra, rb), min(ra, rb)))
        (ay, by) = (top, top + along) if relation == "above" else (top + along, top)
    else:
        ay = rng.uniform(ra, size - ra)
        by = float(np.clip(ay + rng.uniform(-0.1, 0.1) * size, rb, size - rb))
        left = rng.uniform(min(ra, rb), max(size - along - max(ra, rb), min(ra, rb)))
        (ax, bx) = (left, left + along) if relation == "left of" else (left + along, left)
    objects = [(shapes[0], colors[0], ax, ay, ra), (shapes[1], colors[1], bx, by, rb)]
    image = _render(size, background, objects)
    caption = (f"a {sizes[0]} {colors[0]} {shapes[0]} {relation} a {sizes[1]} {colors[1]} "
               f"{shapes[1]} on a {background} background")
    return image, caption


def clip(index: int, frames: int = 9, size: int = 64, seed: int = 0) -> tuple[np.ndarray, str]:
    """Clip `index`: one shape moving in a straight line; FxHxWx3 uint8 and its caption."""
    rng = random.Random(seed * 1_000_003 + index)
    background, (color,) = _pick_colors(rng, 1)
    size_name = rng.choice(list(SIZES))
    shape = rng.choice(SHAPES)
    direction = rng.choice(list(DIRECTIONS))
    dx, dy = DIRECTIONS[direction]
    r = SIZES[size_name] * size
    travel = rng.uniform(0.3, 0.45) * size
    # Start so the whole path stays inside the frame.
    along_lo, along_hi = r + (travel if (dx < 0 or dy < 0) else 0), size - r - (
        travel if (dx > 0 or dy > 0) else 0)
    start_along = rng.uniform(along_lo, max(along_lo, along_hi))
    across = rng.uniform(r, size - r)
    sx, sy = (start_along, across) if dx else (across, start_along)
    video = np.stack([
        _render(size, background, [(shape, color, sx + dx * travel * f / (frames - 1),
                                    sy + dy * travel * f / (frames - 1), r)])
        for f in range(frames)
    ])
    return video, f"a {size_name} {color} {shape} moving {direction} on a {background} background"


if __name__ == "__main__":
    # Writes a contact sheet of a few samples to /tmp for a quick look.
    images, captions = zip(*(scene(i) for i in range(8)))
    Image.fromarray(np.concatenate(images, axis=1)).save("/tmp/scenes.png")
    print("\n".join(captions))
    video, caption = clip(0)
    Image.fromarray(np.concatenate(list(video), axis=1)).save("/tmp/clip.png")
    print(caption)
