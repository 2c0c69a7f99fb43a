"""The generator's biomes: palette, light and object mix of a procedural desert, and their registry.

`train` is the biome the model is trained in (train and val splits) and `test` the shifted test
biome; both draw exactly as before the registry existed. The other biomes are deserts the model
never sees in training, split into two committed groups before any method was tuned on them:

- `TUNING_BIOMES`: thresholds may be fitted and methods chosen on these;
- `HELD_OUT_BIOMES`: for reporting only; nothing is fitted on them.

A new biome goes into one group here, before it is used; moving a biome from held-out to tuning
after results on it were seen would make its numbers worthless (docs/generator.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# The generator's raw class IDs (config/classes.yaml).
TREES, LUSH, GRASS, DRY_BUSH, CLUTTER, FLOWERS, LOGS, ROCKS, LAND, SKY = (
    100, 200, 300, 500, 550, 600, 700, 800, 7100, 10000,
)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Biome:
    """How a desert looks. Every field past `rock_scale` defaults to the train biome's look, so
    the two original biomes draw the same pixels as before these fields existed."""

    name: str
    brightness: float
    sky_top: RGB
    sky_horizon: RGB
    sand: RGB
    # objects per scene: raw ID -> (min, max)
    counts: dict[int, tuple[int, int]] = field(default_factory=dict)
    rock_scale: float = 1.0
    about: str = ""
    # Sky: clouds grow with cloud_bias (0 = the train sky); cloud_color is their grey level.
    cloud_bias: float = 0.0
    cloud_color: int = 245
    # Light after drawing: per-channel gain (white balance, colour cast), contrast around the
    # frame mean, and haze toward the horizon colour, strongest at the horizon.
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    haze: float = 0.0
    # Cast shadows of rocks, bushes and trees: darkening (0 = none), length relative to the
    # object (a low sun gives long ones) and the side they fall to (+1 right, -1 left).
    shadow: float = 0.0
    shadow_length: float = 1.0
    sun_side: float = 1.0
    # Object colours, before jitter.
    rock_color: RGB = (120, 112, 104)
    dry_bush: RGB = (140, 110, 60)
    lush: RGB = (60, 150, 55)
    canopy: RGB = (45, 85, 40)
    grass: RGB = (200, 180, 95)

    @property
    def graded(self) -> bool:
        """Whether the light after drawing differs from the train biome's (else it is skipped)."""
        return self.cast != (1.0, 1.0, 1.0) or self.contrast != 1.0 or self.haze > 0


TRAIN_BIOME = Biome(
    name="train",
    brightness=1.0,
    sky_top=(95, 150, 215),
    sky_horizon=(200, 215, 230),
    sand=(196, 160, 118),
    counts={GRASS: (8, 16), ROCKS: (3, 8), DRY_BUSH: (4, 10), LUSH: (2, 5), TREES: (1, 3),
            LOGS: (1, 3), FLOWERS: (2, 4), CLUTTER: (3, 6)},
    about="the training desert: tan sand, blue sky, every class",
)
TEST_BIOME = Biome(
    name="test",
    brightness=0.78,
    sky_top=(80, 115, 170),
    sky_horizon=(170, 170, 175),
    sand=(170, 130, 105),
    counts={GRASS: (4, 10), ROCKS: (16, 30), DRY_BUSH: (3, 8), LUSH: (0, 3), TREES: (0, 2)},
    rock_scale=1.4,
    about="the shifted test desert: darker, many more rocks, no logs, flowers or clutter",
)
# The biome of each split when none is named (the generator's default output).
SPLIT_BIOMES = {"train": TRAIN_BIOME, "val": TRAIN_BIOME, "test": TEST_BIOME}

TUNING_BIOMES: tuple[Biome, ...] = (
    Biome(
        name="red_canyon", brightness=0.92, sky_top=(70, 125, 205), sky_horizon=(215, 200, 185),
        sand=(178, 92, 58), rock_color=(140, 75, 55), rock_scale=2.0,
        counts={GRASS: (3, 8), ROCKS: (8, 16), DRY_BUSH: (2, 6)},
        cast=(1.08, 0.97, 0.88), shadow=0.4, shadow_length=2.5, sun_side=1.0,
        about="iron-red sand and rocks, rocks x2 in size and number, no trees, low warm sun",
    ),
    Biome(
        name="overcast_scrub", brightness=0.85, sky_top=(150, 155, 162), sky_horizon=(190, 192, 195),
        sand=(165, 150, 128), cloud_bias=0.5, cloud_color=200, contrast=0.65,
        dry_bush=(120, 105, 75), counts={GRASS: (10, 18), DRY_BUSH: (18, 30), ROCKS: (1, 4), CLUTTER: (2, 5)},
        about="grey overcast sky, flat low-contrast light, dense dry bushes",
    ),
    Biome(
        name="green_oasis", brightness=1.05, sky_top=(85, 145, 220), sky_horizon=(195, 215, 225),
        sand=(205, 185, 140), lush=(40, 160, 90), canopy=(35, 100, 55), grass=(170, 185, 90),
        counts={GRASS: (10, 18), LUSH: (6, 12), TREES: (3, 6), DRY_BUSH: (2, 5), ROCKS: (1, 4), FLOWERS: (2, 5)},
        cast=(0.97, 1.03, 0.97),
        about="pale sand, many blue-green bushes and trees, greener grass, high sun",
    ),
)
HELD_OUT_BIOMES: tuple[Biome, ...] = (
    Biome(
        name="dusk_flats", brightness=0.68, sky_top=(60, 55, 115), sky_horizon=(250, 150, 70),
        sand=(185, 135, 100), cloud_color=250, cast=(1.12, 0.9, 0.72),
        shadow=0.5, shadow_length=3.5, sun_side=-1.0,
        counts={GRASS: (6, 12), ROCKS: (2, 6), DRY_BUSH: (2, 6), CLUTTER: (2, 5)},
        about="orange dusk sky, dim warm light, long shadows to the left, sparse flats",
    ),
    Biome(
        name="white_gypsum", brightness=1.02, sky_top=(60, 120, 225), sky_horizon=(185, 210, 240),
        sand=(215, 212, 202), rock_color=(200, 198, 190), dry_bush=(120, 130, 140), lush=(95, 125, 120),
        grass=(215, 210, 180), contrast=1.1, shadow=0.55, shadow_length=0.6,
        counts={GRASS: (4, 10), DRY_BUSH: (6, 12), LUSH: (1, 3), ROCKS: (1, 4)},
        about="near-white gypsum sand, blue-grey shrubs, harsh noon light, short dark shadows",
    ),
    Biome(
        name="dust_haze", brightness=0.9, sky_top=(185, 160, 120), sky_horizon=(215, 185, 140),
        sand=(190, 150, 105), haze=0.7, contrast=0.8, cast=(1.05, 0.98, 0.85),
        counts={GRASS: (6, 12), ROCKS: (3, 8), DRY_BUSH: (4, 10), TREES: (0, 2), CLUTTER: (2, 5)},
        about="dust storm: brown-yellow haze hides the far field, low contrast",
    ),
    Biome(
        name="black_lava", brightness=1.0, sky_top=(95, 150, 215), sky_horizon=(200, 215, 230),
        sand=(70, 66, 64), rock_color=(45, 42, 42), grass=(190, 190, 80), rock_scale=1.2,
        counts={GRASS: (5, 10), ROCKS: (8, 16), DRY_BUSH: (2, 6)},
        about="black basalt ground and rocks, yellow tussock grass, clear sky",
    ),
)
GROUPS = {"tuning": TUNING_BIOMES, "held_out": HELD_OUT_BIOMES}
REGISTRY: dict[str, Biome] = {b.name: b for b in (TRAIN_BIOME, TEST_BIOME, *TUNING_BIOMES, *HELD_OUT_BIOMES)}


def group_of(name: str) -> str:
    """The biome's committed group; 'default' for train and test, the splits' own biomes."""
    return next((g for g, members in GROUPS.items() if any(b.name == name for b in members)), "default")


def resolve(names: Iterable[str]) -> list[Biome]:
    """Biomes named on a command line: names or comma lists, a group name ('tuning', 'held_out')
    standing for its members; each biome once, in the order named. An unknown name is a
    ValueError naming it and listing the known ones."""
    out: dict[str, Biome] = {}
    for word in names:
        for name in filter(None, (n.strip() for n in word.split(","))):
            if name in GROUPS:
                out.update((b.name, b) for b in GROUPS[name])
            elif name in REGISTRY:
                out[name] = REGISTRY[name]
            else:
                raise ValueError(f"unknown biome {name!r}; known biomes: {', '.join(REGISTRY)} "
                                 f"(or a group: {', '.join(GROUPS)})")
    return list(out.values())


def describe() -> str:
    """The registry, one biome a line: name, group and what it is (`offroad-seg synth --list-biomes`)."""
    width = max(map(len, REGISTRY))
    return "\n".join(f"{b.name:<{width}}  {group_of(b.name):<8}  {b.about}" for b in REGISTRY.values())
