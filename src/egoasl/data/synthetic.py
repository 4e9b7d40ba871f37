"""A synthetic Ego4D Episodic Memory dataset in the official layout (the demo's and tests' data).

:func:`generate_synthetic` writes, under one folder::

    annotations/moments_{train,val,test_unannotated}.json   official MQ nesting (test: no annotations)
    annotations/nlq_{train,val,test_unannotated}.json       official NLQ nesting (test: only ``query``)
    features/slowfast/<video_uid>.pt                        per-video source, float32 [N, D]
    features/omnivore/<video_uid>.pt                        per-video source, float32 [N, D]
    features/egovlp/<clip_uid>.pt                           per-clip source, float32 [M, D]
    features/text/<clip_uid>/<annotation_uid>_<query_idx>.pt  NLQ token features [L, text_dim]
    synthetic.json                                          counts, classes and the feature sources

Time conventions (the same as the official features, section 5 of the format notes):

* per-video sources: vector ``i`` summarises the 32-frame window ``[16 i, 16 i + 32)`` at 30 fps,
  centred at ``(16 i + 16) / 30`` s of the video; ``N`` is the official count for
  ``F = round(duration * 30)`` frames (:func:`official_feature_count`);
* per-clip source: ``M = floor(clip_duration * 1.875)`` vectors, row ``j`` centred at
  ``(j + 0.5) / 1.875`` s of the clip, i.e. ``video_start_sec + (j + 0.5) / 1.875`` s of the video;
* text: one row per token of :func:`tokenize_query` (lower-cased words and punctuation).

The signal
----------
Every video has one hidden *latent timeline*: a vector per 4-frame bin (2/15 s) whose channels are

* one amplitude per action class, one class-shared **start** and one **end** channel,
* one amplitude per NLQ entity (objects and places),
* a few **scene** channels drifting slowly (smooth random knots every 15 s) and a few
  **nuisance** channels of white noise (both shared by all sources: the background).

Each feature source is its own random linear map of that timeline (one unit-norm row per
channel: the class, boundary and entity *prototypes* of that source; the class and boundary
prototypes are mutually orthogonal when the source has enough dimensions), times a per-source
scale, plus a per-source bias and independent Gaussian noise (std 0.15 per dimension). Before
mapping, the timeline is averaged over each vector's 32-frame window, so all sources agree in
time and short events are blurred exactly as a 32-frame feature window would blur them.

Inside an action instance ``[s, e]`` the class channel follows a bump over the normalised
position ``u = (t - s) / (e - s)``: ``a * (0.25 + 0.75 * sin(pi u)^2)`` with ``a ~ U(0.8, 1.2)``,
so the class evidence is strongest in the middle and fades (not to zero) at the edges, which is
what ASL's class-level sensitivity models. The start and end channels carry Gaussian pulses at
``s`` and ``e`` (width 15 % of the instance, within 0.25-0.8 s): boundaries are localisable
although they carry little class evidence. Frames near a boundary get up to 2.5x the feature
noise (transitional blur). Instances of different classes sometimes overlap (about one in four
may); lengths are log-uniform between 1 s and 35 % of the clip. Each clip draws 1-3 classes with
1-6 instances each, plus the classes dealt to it: the classes are dealt round-robin over the MQ
clips of each split, so every class has instances in train and in val. Every annotator (2-3 per
clip) labels every instance with start/end jittered by N(0, 0.25 s), all ``primary: true``;
about one instance in ten also gets a non-primary label from the first annotator (another
official label, or a raw annotation-tool label outside the 110), which the benchmark ignores.

NLQ: every query names one entity (an object or, for the "People" template, a place). The
entity has a hidden vector ``h``; its video prototype in each source is the unit image of ``h``
under that source's own random map, and the text embedding of its word is the unit image of
``h`` under a text map (plus a little noise), so text and video are linearly alignable through
the hidden space. The entity's channel is on (a plateau with 0.5 s ramps) exactly during the
answer window (log-uniform 2-30 s, at most 40 % of the clip); entities are unique within a clip,
and a few extra entities appear elsewhere as distractors. Other words get independent random
embeddings; token features are the word embeddings plus N(0, 0.1) noise. Each NLQ clip has
1-3 annotations of 2-5 queries; one train query has ``query: null`` (no text file, but it keeps
the ``query_idx`` numbering) and, above the tiny scale, two train windows have zero length
(the entity shows for 1 s around that point) and one val query is null too. MQ clips carry a few
entity appearances and NLQ clips a few unannotated actions, as background structure.

Clips are laid end to end on their video with random gaps (MQ and NLQ clips on the same videos,
never sharing a uid); above the tiny scale one train MQ clip starts 0.0123 s before its video,
as 90 real clips do. Videos are split about 60/20/20 % into train/val/test (at least one each).

Learnability (seed 0, demo scale): a naive per-frame 1-D conv classifier with thresholded
segments reaches an average MQ mAP of about 0.84 on val, and a bilinear text-frame scorer an NLQ
R@1@0.3 of about 0.77, each in well under a CPU minute, so the demo's bars are clearly reachable.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, purpose, index)``:
the same seed gives byte-identical JSON and tensors. ``synthetic.json`` also records every
video's duration (``video_durations``, like ``duration_sec`` of the real ``ego4d.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from egoasl import __version__
from egoasl.errors import EgoaslError

FPS = 30
"""Frame rate of the canonical videos; every ``*_frame`` field is ``round(seconds * FPS)``."""
VIDEO_WINDOW_FRAMES = 32
VIDEO_STRIDE_FRAMES = 16
CLIP_RATE = FPS / VIDEO_STRIDE_FRAMES
"""Vectors per second of every source (1.875, the official features' rate)."""
MAX_QUERY_TOKENS = 48

_BIN_FRAMES = 4  # latent timeline resolution: one bin per 4 frames (2/15 s)
_BIN_SEC = _BIN_FRAMES / FPS
_PAD_BINS = 16  # latent bins kept before t = 0 (clips may start slightly before the video)
_WINDOW_BINS = VIDEO_WINDOW_FRAMES // _BIN_FRAMES

# Signal constants (see the module docstring).
_ACTION_AMP = (0.8, 1.2)
_ACTION_FLOOR = 0.25
_BOUNDARY_AMP = 0.8
_BOUNDARY_WIDTH = (0.15, 0.25, 0.8)  # fraction of the instance length, min and max seconds
_TRANSITION_NOISE = 1.5
_ENTITY_AMP = (0.8, 1.2)
_ENTITY_RAMP = 0.5
_SCENE_CHANNELS, _SCENE_STD, _SCENE_KNOT_SEC = 4, 0.35, 15.0
_NUISANCE_CHANNELS, _NUISANCE_STD = 8, 0.6
_FEATURE_NOISE = 0.15
_SOURCE_BIAS_STD = 0.2
_TEXT_NOISE = 0.1
_TEXT_ENTITY_NOISE = 0.25
_LABEL_JITTER = 0.25
_OVERLAP_PROB = 0.25
_NON_PRIMARY_PROB = 0.1
_MIN_ACTION_SEC = 1.0
_MAX_ACTION_FRACTION = 0.35
_WINDOW_SEC = (2.0, 30.0)
_MAX_WINDOW_FRACTION = 0.4
_NEGATIVE_CLIP_START = -0.0123047  # like the 90 real MQ clips that start just before their video

SPLITS = ("train", "val", "test")
MQ_FILES = {"train": "moments_train.json", "val": "moments_val.json", "test": "moments_test_unannotated.json"}
NLQ_FILES = {"train": "nlq_train.json", "val": "nlq_val.json", "test": "nlq_test_unannotated.json"}
TEXT_SOURCE = "text"
"""Folder under ``features/`` that holds the NLQ query token features."""

# The 110 official MQ labels (format notes, Appendix A), in Python-sorted order. Seven of them
# contain literal double quotes and commas; they are the official strings, kept as they are.
OFFICIAL_MQ_LABELS: tuple[str, ...] = (
    '"clean_/_repair_small_equipment_(mower,_trimmer_etc.)"',
    '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"',
    '"level_ground_/_soil_(eg._using_rake,_shovel,_etc)"',
    '"make_the_bed_/_arrange_pillows,_sheets_etc._on_bed"',
    '"put_on_safety_equipment_(e.g._gloves,_helmet,_safety_goggles)"',
    '"try-out_/_wear_accessories_(e.g._tie,_belt,_scarf)"',
    '"try-out_/_wear_clothing_items_(e.g._shirt,_jeans,_sweater)"',
    'arrange_/_organize_clothes_in_closet/dresser',
    'arrange_/_organize_items_in_fridge',
    'arrange_/_organize_other_items',
    'arrange_pillows_on_couch_/_chair',
    'browse_through_accessories_on_rack_/_shelf',
    'browse_through_clothing_items_on_rack_/_shelf_/_hanger',
    'browse_through_groceries_or_food_items_on_rack_/_shelf',
    'browse_through_other_items_on_rack_/_shelf',
    'chop_/_cut_wood_pieces_using_tool',
    'clean_/_sweep_floor_with_broom',
    'clean_/_wipe_/_oil_metallic_item',
    'clean_/_wipe_a_table_or_kitchen_counter',
    'clean_/_wipe_kitchen_appliance',
    'clean_/_wipe_other_surface_or_object',
    'climb_up_/_down_a_ladder',
    'collect_/_rake_dry_leaves_on_ground',
    'compare_two_clothing_items',
    'converse_/_interact_with_someone',
    'count_money_before_paying',
    'cut_/_trim_grass_with_a_lawnmower',
    'cut_/_trim_grass_with_other_tools',
    'cut_dough',
    'cut_open_a_package_(e.g._with_scissors)',
    'cut_other_item_using_tool',
    'cut_thread_/_paper_/_cardboard_using_scissors_/_knife_/_cutter',
    'cut_tree_branch',
    'dig_or_till_the_soil_by_hand',
    'dig_or_till_the_soil_with_a_hoe_or_other_tool',
    'dismantle_other_item',
    'do_some_exercise',
    'drill_into_wall_/_wood_/_floor_/_metal',
    'drink_beverage',
    'drive_a_vehicle',
    'eat_a_snack',
    'enter_a_supermarket_/_shop',
    'exit_a_supermarket_/_shop',
    'fill_a_pot_/_bottle_/_container_with_water',
    'fix_/_remove_/_replace_a_tire_or_wheel',
    'fix_bonnet_/_engine_of_car',
    'fix_other_item',
    'fix_pipe_/_plumbing',
    'fix_wiring',
    'fold_clothes_/_sheets',
    'fry_dough',
    'fry_other_food_item',
    'hang_clothes_in_closet_/_on_hangers',
    'hang_clothes_to_dry',
    'harvest_vegetables_/_fruits_/_crops_from_plants_on_the_ground',
    'interact_or_play_with_pet_/_animal',
    'iron_clothes_or_sheets',
    'knead_/_shape_/_roll-out_dough',
    'load_/_unload_a_washing_machine_or_dryer',
    'look_at_clothes_in_the_mirror',
    'make_coffee_or_tea_/_use_a_coffee_machine',
    'mark_item_with_pencil_/_pen_/_marker',
    'measure_wooden_item_using_tape_/_ruler',
    'move_/_shift_/_arrange_small_tools',
    'move_/_shift_around_construction_material',
    'pack_food_items_/_groceries_into_bags_/_boxes',
    'pack_other_items_into_bags_/_boxes',
    'pack_soil_into_the_ground_or_a_pot_/_container',
    'paint_using_paint_brush_/_roller',
    'pay_at_billing_counter',
    'peel_a_fruit_or_vegetable',
    'place_items_in_shopping_cart',
    'plant_seeds_/_plants_/_flowers_into_ground',
    'plaster_wall_/_surface',
    'play_a_video_game',
    'play_board_game_or_card_game',
    'prepare_or_apply_cement_/_concrete_/_mortar',
    'put_away_(or_take_out)_dishes_/_utensils_in_storage',
    'put_away_(or_take_out)_food_items_in_the_fridge',
    'put_away_(or_take_out)_ingredients_in_storage',
    'put_food_into_the_oven_to_bake',
    'read_a_book_/_magazine_/_shopping_list_etc.',
    'remove_food_from_the_oven',
    'remove_weeds_from_ground',
    'rinse_/_drain_other_food_item_in_sieve_/_colander',
    'serve_food_onto_a_plate',
    'smoke_cigar_/_cigarette_/_vape',
    'smooth_wood_using_sandpaper_/_sander_/_tool',
    'stand_in_the_queue_/_line_at_a_shop_/_supermarket',
    'stir_/_mix_food_while_cooking',
    'stir_/_mix_ingredients_in_a_bowl_or_pan_(before_cooking)',
    'take_photo_/_record_video_with_a_camera',
    'taste_food_while_cooking',
    'throw_away_trash_/_put_trash_in_trash_can',
    'tie_up_branches_/_plants_with_string',
    'trim_hedges_or_branches',
    'turn-on_/_light_the_stove_burner',
    'use_a_laptop_/_computer',
    'use_a_vacuum_cleaner_to_clean',
    'use_hammer_/_nail-gun_to_fix_nail',
    'use_phone',
    'walk_down_stairs_/_walk_up_stairs',
    'wash_dishes_/_utensils_/_bakeware_etc.',
    'wash_hands',
    'wash_vegetable_/_fruit_/_food_item',
    'watch_television',
    'water_soil_/_plants_/_crops',
    'weigh_food_/_ingredient_using_a_weighing_scale',
    'withdraw_money_from_atm_/_operate_atm',
    'write_notes_in_a_paper_/_book',
)

RAW_TOOL_LABELS: tuple[str, ...] = (
    "load/unload_the_dishwasher",
    "use_the_microwave_/_warm_something_in_the_microwave",
)
"""Annotation-tool labels outside the 110; real files use such strings for non-primary labels."""

OBJECTS: tuple[str, ...] = (
    "knife", "scissors", "phone", "cup", "bowl", "bottle", "keys", "wallet", "towel", "bag",
    "hammer", "screwdriver", "spoon", "plate", "laptop", "book", "pen", "remote", "glasses", "shoe",
    "box", "bucket", "broom", "ladder", "drill", "tape", "sponge", "pan", "kettle", "charger",
)  # fmt: skip
PLACES: tuple[str, ...] = ("kitchen", "garage", "garden", "bathroom", "bedroom", "shop", "balcony", "office")
_CONTAINERS = frozenset({"bowl", "bag", "box", "bucket", "pan", "cup", "kettle"})
_EVENT_VERBS = ("cook", "wash", "clean", "cut", "eat", "paint", "read", "drive")
_NO_VERB = "[verb_not_applicable]"
_NO_SLOT = "[slot_not_applicable]"


@dataclass(frozen=True)
class _Template:
    """One NLQ template: the official template string and how a query is written from it."""

    template: str
    kind: str  # "object", "container" or "place": what X names
    text: str  # format string with {x} (and {when}, {y} for the before/after template)
    verb_x: str = _NO_VERB
    slot_y: str = _NO_SLOT  # "{y}" means the drawn event verb
    verb_y: str = _NO_VERB


_TEMPLATES: tuple[_Template, ...] = (
    _Template("Objects: Where is object X before / after event Y?", "object", "Where is the {x} {when} I {y}?",
              slot_y="{y}", verb_y="{y}"),
    _Template("Objects: Where is object X?", "object", "Where is the {x}?"),
    _Template("Objects: Where is object X?", "object", "Where was the {x}?"),
    _Template("Objects: What did I put in X?", "container", "What did I put in the {x}?", slot_y="put", verb_y="put"),
    _Template("Objects: How many X\u2019s? (quantity question)", "object", "How many times did I see the {x}?"),
    _Template("Objects: In what location did I see object X ?", "object", "In what location did I see the {x}?"),
    _Template("Objects: Where is my object X?", "object", "Where is my {x}?"),
    _Template("Place: Where did I put X?", "object", "Where did I put the {x}?", verb_x="put"),
    _Template("People: Who did I talk to in location X?", "place", "Who did I talk to in the {x}?", verb_x="talk"),
)  # fmt: skip

_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize_query(text: str) -> list[str]:
    """The tokens of a query, one row each in its text feature file.

    Lower-cased runs of letters/digits and single punctuation characters:
    ``"Where is the knife?"`` -> ``["where", "is", "the", "knife", "?"]``.
    """
    return _TOKEN_RE.findall(text.lower())


def official_feature_count(num_frames: int) -> int:
    """Number of official per-video feature vectors for a video of ``num_frames`` frames.

    32-frame windows every 16 frames, the last one moved back to end at the last frame
    (PyTorchVideo's ``UniformClipSampler(backpad_last=True)``)::

        N = 1 if F < 32 else floor((F - 32) / 16) + 1 + (1 if (F - 32) % 16 else 0)
    """
    if num_frames < VIDEO_WINDOW_FRAMES:
        return 1
    rest = num_frames - VIDEO_WINDOW_FRAMES
    return rest // VIDEO_STRIDE_FRAMES + 1 + (1 if rest % VIDEO_STRIDE_FRAMES else 0)


def video_feature_times(num_vectors: int) -> np.ndarray:
    """Video seconds of the centres of per-video vectors ``0 .. num_vectors - 1``: ``(16 i + 16) / 30``."""
    return (VIDEO_STRIDE_FRAMES * np.arange(num_vectors) + VIDEO_STRIDE_FRAMES) / FPS


def clip_feature_count(clip_duration: float) -> int:
    """Rows of a per-clip feature file: ``floor(clip_duration * 1.875)`` (VSLNet's ``num_frames``)."""
    return int(math.floor(clip_duration * CLIP_RATE + 1e-9))


def clip_feature_times(num_vectors: int) -> np.ndarray:
    """Clip seconds of the centres of per-clip rows ``0 .. num_vectors - 1``: ``(j + 0.5) / 1.875``."""
    return (np.arange(num_vectors) + 0.5) / CLIP_RATE


@dataclass(frozen=True)
class SourceSpec:
    """One feature source: its folder name under ``features/``, vector size and layout.

    ``layout`` is ``"video"`` (one file per canonical video, keyed by ``video_uid``, vector
    ``i`` centred at ``(16 i + 16) / 30`` s of the video) or ``"clip"`` (one file per clip, keyed
    by ``clip_uid``, row ``j`` centred at ``(j + 0.5) / rate`` s of the clip). ``rate`` is in
    vectors per second.
    """

    name: str
    dim: int
    layout: str
    rate: float = CLIP_RATE

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScaleSpec:
    """Defaults of one ``--scale``: sizes of the dataset and of the features."""

    videos: int
    classes: int
    mq_clips_per_video: int
    nlq_clips_per_video: int
    clip_seconds: tuple[float, float]
    source_dims: tuple[int, int, int]  # slowfast, omnivore, egovlp
    text_dim: int
    hidden_dim: int  # size of the hidden space shared by entity words and entity video prototypes
    objects: int
    places: int
    zero_length_train: int  # NLQ train queries with a zero-length window
    null_query_val: bool  # a `query: null` entry in val too (there is always one in train)
    negative_clip_start: bool  # one train clip starts 0.0123 s before its video, like real ones
    annotations_per_nlq_clip: tuple[int, int] = (1, 3)
    queries_per_annotation: tuple[int, int] = (2, 5)


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(videos=5, classes=6, mq_clips_per_video=1, nlq_clips_per_video=1, clip_seconds=(40.0, 60.0),
                      source_dims=(24, 16, 12), text_dim=16, hidden_dim=8, objects=12, places=4,
                      zero_length_train=0, null_query_val=False, negative_clip_start=False),
    "demo": ScaleSpec(videos=24, classes=8, mq_clips_per_video=2, nlq_clips_per_video=2, clip_seconds=(120.0, 200.0),
                      source_dims=(48, 32, 24), text_dim=32, hidden_dim=12, objects=16, places=4,
                      zero_length_train=2, null_query_val=True, negative_clip_start=True),
    "full": ScaleSpec(videos=30, classes=110, mq_clips_per_video=2, nlq_clips_per_video=2, clip_seconds=(480.0, 480.0),
                      source_dims=(2304, 1536, 256), text_dim=768, hidden_dim=64, objects=30, places=8,
                      zero_length_train=2, null_query_val=True, negative_clip_start=True),
}  # fmt: skip
"""``tiny``: unit tests; ``demo``: the CPU demo (learnable in minutes); ``full``: real sizes for benchmarks."""

_SOURCE_NAMES = ("slowfast", "omnivore", "egovlp")
_SOURCE_LAYOUTS = ("video", "video", "clip")
_SOURCE_SCALE = {"slowfast": 1.0, "omnivore": 0.6, "egovlp": 1.5}


def _split_counts() -> dict[str, int]:
    return {split: 0 for split in SPLITS}


@dataclass
class SyntheticSummary:
    """What :func:`generate_synthetic` wrote; also saved as ``synthetic.json``.

    Count fields map a split name to a number. ``mq_instances`` counts the true (hidden)
    action instances, test included; ``mq_primary_labels`` counts the primary labels of all
    annotators (what the benchmark scores). ``nlq_queries`` counts queries with text;
    ``nlq_null_queries`` the ``query: null`` entries.
    """

    scale: str
    seed: int
    classes: list[str]
    sources: list[SourceSpec]
    text_dim: int
    videos: dict[str, int] = field(default_factory=_split_counts)
    mq_clips: dict[str, int] = field(default_factory=_split_counts)
    mq_instances: dict[str, int] = field(default_factory=_split_counts)
    mq_primary_labels: dict[str, int] = field(default_factory=_split_counts)
    mq_non_primary_labels: dict[str, int] = field(default_factory=_split_counts)
    nlq_clips: dict[str, int] = field(default_factory=_split_counts)
    nlq_annotations: dict[str, int] = field(default_factory=_split_counts)
    nlq_queries: dict[str, int] = field(default_factory=_split_counts)
    nlq_null_queries: dict[str, int] = field(default_factory=_split_counts)
    nlq_zero_length: dict[str, int] = field(default_factory=_split_counts)
    feature_files: dict[str, int] = field(default_factory=dict)
    video_durations: dict[str, float] = field(default_factory=dict)  # video_uid -> seconds (like ego4d.json)
    generator: str = f"egoasl synth {__version__}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sources"] = [source.to_dict() for source in self.sources]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SyntheticSummary":
        data = dict(data)
        data["sources"] = [SourceSpec(**source) for source in data["sources"]]
        return cls(**data)

    def describe(self) -> str:
        """A short multi-line table of the counts per split."""
        rows = [
            ("videos", self.videos), ("MQ clips", self.mq_clips), ("MQ instances", self.mq_instances),
            ("MQ primary labels", self.mq_primary_labels), ("NLQ clips", self.nlq_clips),
            ("NLQ queries", self.nlq_queries), ("NLQ null queries", self.nlq_null_queries),
            ("NLQ zero-length", self.nlq_zero_length),
        ]  # fmt: skip
        lines = [f"{'':18s}" + "".join(f"{split:>8s}" for split in SPLITS)]
        lines += [f"{name:18s}" + "".join(f"{counts[split]:8d}" for split in SPLITS) for name, counts in rows]
        sources = ", ".join(f"{s.name} ({s.layout}, {s.dim})" for s in self.sources)
        lines.append(f"{len(self.classes)} classes; sources: {sources}; text dim {self.text_dim}")
        return "\n".join(lines)


def load_summary(root: str | Path) -> SyntheticSummary:
    """Read ``synthetic.json`` of a folder written by :func:`generate_synthetic`."""
    path = Path(root) / "synthetic.json"
    if not path.is_file():
        raise EgoaslError(f"{path}: not found; is {root} a folder written by `egoasl synth`?")
    try:
        return SyntheticSummary.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise EgoaslError(f"{path}: not a valid synthetic.json ({exc})") from None


def _rng(seed: int, purpose: str, index: int = 0) -> np.random.Generator:
    """An independent random stream for ``(seed, purpose, index)``."""
    code = int.from_bytes(purpose.encode("ascii")[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, code, index]))


def _uid(rng: np.random.Generator) -> str:
    """A uuid4 string drawn from ``rng`` (real Ego4D uids are uuid4 strings)."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class SyntheticWorld:
    """The hidden generative model of one seed: classes, entities and every source's map.

    Latent channel layout: ``[0, K)`` action classes, ``K`` start, ``K + 1`` end,
    ``[K + 2, K + 2 + E)`` entities, then scene and nuisance channels. ``maps[name]`` is the
    ``[channels, dim]`` matrix of a source, with unit-norm rows: row ``k`` is the prototype of
    class ``k`` in that source. Features are ``scale * latent @ map + bias + noise``.
    """

    seed: int
    labels: list[str]
    entities: list[str]
    num_objects: int
    sources: list[SourceSpec]
    text_dim: int
    maps: dict[str, np.ndarray]
    scales: dict[str, float]
    biases: dict[str, np.ndarray]
    entity_text: np.ndarray  # [E, text_dim] unit text embeddings of the entity words
    annotators: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def start_channel(self) -> int:
        return self.num_classes

    @property
    def end_channel(self) -> int:
        return self.num_classes + 1

    def entity_channel(self, entity: int) -> int:
        return self.num_classes + 2 + entity

    @property
    def scene_channels(self) -> slice:
        first = self.num_classes + 2 + len(self.entities)
        return slice(first, first + _SCENE_CHANNELS)

    @property
    def nuisance_channels(self) -> slice:
        first = self.scene_channels.stop
        return slice(first, first + _NUISANCE_CHANNELS)

    @property
    def num_channels(self) -> int:
        return self.nuisance_channels.stop

    def class_prototype(self, source: str, label: str | int) -> np.ndarray:
        """Unit vector of a class (label string or index) in a source's feature space."""
        k = self.labels.index(label) if isinstance(label, str) else int(label)
        return self.maps[source][k]

    def boundary_prototype(self, source: str, which: str) -> np.ndarray:
        """Unit vector of the class-shared ``"start"`` or ``"end"`` pattern in a source."""
        return self.maps[source][self.start_channel if which == "start" else self.end_channel]

    def entity_prototype(self, source: str, entity: str) -> np.ndarray:
        """Unit vector of an NLQ entity (object or place word) in a source's feature space."""
        return self.maps[source][self.entity_channel(self.entities.index(entity))]

    def word_embedding(self, word: str) -> np.ndarray:
        """Noise-free text embedding of one token (entity words share the hidden space)."""
        if word in self.entities:
            return self.entity_text[self.entities.index(word)]
        digest = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
        return _unit(_rng(self.seed, "word", digest).standard_normal(self.text_dim))


def build_world(seed: int = 0, classes: int | None = None, scale: str = "demo") -> SyntheticWorld:
    """The hidden model behind :func:`generate_synthetic` for the same arguments.

    Tests and notebooks use it to look at prototypes; the generator never writes it to disk.
    """
    spec = _scale_spec(scale)
    num_classes = _check_classes(spec.classes if classes is None else classes)
    rng = _rng(seed, "world")
    quoted = [label for label in OFFICIAL_MQ_LABELS if label.startswith('"')]
    picked = list(rng.choice(quoted, size=2, replace=False))
    others = [label for label in OFFICIAL_MQ_LABELS if label not in picked]
    picked += list(rng.choice(others, size=num_classes - 2, replace=False))
    labels = [str(label) for label in rng.permutation(np.array(picked, dtype=object))]
    objects = [str(o) for o in rng.choice(OBJECTS, size=spec.objects, replace=False)]
    places = [str(p) for p in rng.choice(PLACES, size=spec.places, replace=False)]
    entities = objects + places
    hidden = _unit(rng.standard_normal((len(entities), spec.hidden_dim)))
    sources = [SourceSpec(n, d, layout) for n, d, layout in zip(_SOURCE_NAMES, spec.source_dims, _SOURCE_LAYOUTS)]
    maps, biases = {}, {}
    for source in sources:
        dim = source.dim
        mixing = rng.standard_normal((spec.hidden_dim, dim))
        maps[source.name] = np.concatenate(
            [
                _random_prototypes(rng, num_classes + 2, dim),  # class, start and end prototypes
                _unit(hidden @ mixing),  # entity prototypes: images of the hidden vectors
                _unit(rng.standard_normal((_SCENE_CHANNELS + _NUISANCE_CHANNELS, dim))),
            ]
        ).astype(np.float32)
        biases[source.name] = (_SOURCE_BIAS_STD * rng.standard_normal(dim)).astype(np.float32)
    text_mixing = rng.standard_normal((spec.hidden_dim, spec.text_dim))
    entity_text = _unit(
        _unit(hidden @ text_mixing) + _TEXT_ENTITY_NOISE * _unit(rng.standard_normal((len(entities), spec.text_dim)))
    )
    return SyntheticWorld(
        seed=seed,
        labels=labels,
        entities=entities,
        num_objects=len(objects),
        sources=sources,
        text_dim=spec.text_dim,
        maps=maps,
        scales={source.name: _SOURCE_SCALE[source.name] for source in sources},
        biases=biases,
        entity_text=entity_text,
        annotators=[_uid(rng) for _ in range(16)],
    )


def _random_prototypes(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``count`` random unit vectors, mutually orthogonal when ``dim >= count``."""
    vectors = rng.standard_normal((count, dim))
    if dim >= count:
        q, r = np.linalg.qr(vectors.T)
        vectors = (q * np.sign(np.diag(r))).T
    return _unit(vectors)


def _scale_spec(scale: str) -> ScaleSpec:
    if scale not in SCALES:
        raise EgoaslError(f"unknown synthetic scale {scale!r}: expected one of {', '.join(SCALES)}")
    return SCALES[scale]


def _check_classes(classes: int) -> int:
    if not 2 <= classes <= len(OFFICIAL_MQ_LABELS):
        raise EgoaslError(f"--classes must be between 2 and {len(OFFICIAL_MQ_LABELS)}, got {classes}")
    return classes


@dataclass
class _Event:
    """One stretch of latent activity in video seconds: an action instance or an entity appearance."""

    kind: str  # "action" or "entity"
    index: int  # class index or entity index
    start: float
    end: float
    amp: float


@dataclass
class _VideoFlags:
    """Where the special cases go (decided once per dataset so that they always exist)."""

    negative_start: bool = False
    null_query: bool = False
    zero_length_clips: int = 0
    force_non_primary: bool = False
    mq_classes: list[tuple[int, ...]] = field(default_factory=list)  # classes each MQ clip must contain


@dataclass
class _VideoPlan:
    video_uid: str
    split: str
    duration: float
    mq_clips: list[dict] = field(default_factory=list)
    nlq_clips: list[dict] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    clip_spans: list[tuple[str, float, float]] = field(default_factory=list)  # (clip_uid, video_start_sec, duration)
    texts: list[tuple[str, str, int, str]] = field(default_factory=list)  # (clip_uid, annotation_uid, query_idx, query)
    instances: int = 0


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(max(high, low)))))


def _frame(seconds: float) -> int:
    return int(round(seconds * FPS))


def _clip_header(clip_uid: str, source_clip_uid: str, video_start: float, duration: float) -> dict:
    video_end = round(video_start + duration, 7)
    return {
        "clip_uid": clip_uid,
        "video_start_sec": video_start,
        "video_end_sec": video_end,
        "video_start_frame": _frame(video_start),
        "video_end_frame": _frame(video_end),
        "clip_start_sec": 0,
        "clip_end_sec": duration,
        "clip_start_frame": 0,
        "clip_end_frame": _frame(duration),
        "source_clip_uid": source_clip_uid,
    }


def _place_actions(
    rng: np.random.Generator,
    duration: float,
    num_classes: int,
    draws: tuple[int, int],
    per_class: tuple[int, int],
    must: tuple[int, ...] = (),
) -> list[tuple[int, float, float]]:
    """True action instances ``(class, start, end)`` in clip seconds, sorted by start.

    Draws ``draws`` classes (always including ``must``) and ``per_class`` instances of each,
    with log-uniform lengths. First instances are placed before second ones. An instance never
    overlaps or touches (1 s gap) one of the same class; about one instance in four may overlap
    instances of other classes. An instance that finds no room after a few tries (halving its
    length) is dropped, except the first one of a ``must`` class, which then may overlap
    instances of other classes (so it always finds room).
    """
    num_draws = max(len(must), int(rng.integers(draws[0], min(draws[1], num_classes) + 1)))
    rest = [k for k in rng.permutation(num_classes).tolist() if k not in must]
    classes = list(must) + rest[: num_draws - len(must)]
    counts = [int(rng.integers(per_class[0], per_class[1] + 1)) for _ in classes]
    order = [k for round_ in range(max(counts)) for k, n in zip(classes, counts) if n > round_]
    max_len = max(1.5 * _MIN_ACTION_SEC, _MAX_ACTION_FRACTION * duration)
    placed: list[tuple[int, float, float]] = []
    for position, k in enumerate(order):
        length = _log_uniform(rng, _MIN_ACTION_SEC, max_len)
        may_overlap = rng.random() < _OVERLAP_PROB
        required = k in must and position < len(classes)  # first instance of a class the clip must hold
        for attempt in range(16 if required else 12):
            if attempt and attempt % 4 == 0:
                length = max(_MIN_ACTION_SEC, length / 2)
            may_overlap = may_overlap or attempt >= 12  # a required instance may overlap other classes
            start = float(rng.uniform(0.0, duration - length))
            end = start + length
            others = [(s, e) for k2, s, e in placed if k2 == k or not may_overlap]
            if all(end + 1.0 <= s or e + 1.0 <= start for s, e in others):
                placed.append((int(k), start, end))
                break
    return sorted(placed, key=lambda inst: (inst[1], inst[0]))


def _mq_label(label: str, start: float, end: float, video_start: float, primary: bool) -> dict:
    video_start_time = round(video_start + start, 7)
    video_end_time = round(video_start + end, 7)
    return {
        "start_time": start,
        "end_time": end,
        "label": label,
        "video_start_time": video_start_time,
        "video_end_time": video_end_time,
        "video_start_frame": _frame(video_start_time),
        "video_end_frame": _frame(video_end_time),
        "primary": primary,
    }


def _jitter(rng: np.random.Generator, start: float, end: float, duration: float) -> tuple[float, float]:
    """One annotator's copy of a true instance: both ends moved by N(0, 0.25 s)."""
    jittered_start = max(0.0, start + float(rng.normal(0.0, _LABEL_JITTER)))
    jittered_end = min(duration + 0.5, end + float(rng.normal(0.0, _LABEL_JITTER)))
    jittered_end = max(jittered_end, jittered_start + 0.2)
    return round(jittered_start, 5), round(jittered_end, 5)


def _action_events(
    rng: np.random.Generator, instances: list[tuple[int, float, float]], video_start: float
) -> list[_Event]:
    """Latent events of action instances given in clip seconds."""
    return [
        _Event("action", k, video_start + start, video_start + end, float(rng.uniform(*_ACTION_AMP)))
        for k, start, end in instances
    ]


def _entity_events(
    rng: np.random.Generator, candidates: list[int], count: int, duration: float, video_start: float
) -> list[_Event]:
    """Distractor appearances (2-10 s) of entities that no query of the clip asks about."""
    events = []
    for entity in candidates[:count]:
        length = float(rng.uniform(2.0, min(10.0, 0.3 * duration)))
        start = float(rng.uniform(0.0, duration - length))
        amp = float(rng.uniform(*_ENTITY_AMP))
        events.append(_Event("entity", int(entity), video_start + start, video_start + start + length, amp))
    return events


def _plan_mq_clip(
    world: SyntheticWorld, rng: np.random.Generator, plan: _VideoPlan, video_start: float, duration: float,
    force_non_primary: bool, must: tuple[int, ...],
) -> None:  # fmt: skip
    clip = _clip_header(_uid(rng), _uid(rng), video_start, duration)
    instances = _place_actions(rng, duration, world.num_classes, draws=(1, 3), per_class=(1, 6), must=must)
    plan.events += _action_events(rng, instances, video_start)
    extra = rng.permutation(len(world.entities)).tolist()
    plan.events += _entity_events(rng, extra, int(rng.integers(0, 3)), duration, video_start)
    plan.instances += len(instances)
    if plan.split != "test":
        annotators = rng.choice(world.annotators, size=int(rng.integers(2, 4)), replace=False)
        secondary = [bool(rng.random() < _NON_PRIMARY_PROB) for _ in instances]
        if force_non_primary and instances and not any(secondary):
            secondary[0] = True
        annotations = []
        for a, annotator in enumerate(annotators):
            labels = []
            for (k, start, end), add_secondary in zip(instances, secondary):
                label_start, label_end = _jitter(rng, start, end, duration)
                labels.append(_mq_label(world.labels[k], label_start, label_end, video_start, True))
                if add_secondary and a == 0:
                    pool = [label for label in OFFICIAL_MQ_LABELS if label != world.labels[k]] + list(RAW_TOOL_LABELS)
                    other = str(pool[int(rng.integers(len(pool)))])
                    labels.append(_mq_label(other, label_start, label_end, video_start, False))
            annotations.append({"annotator_uid": str(annotator), "labels": labels})
        clip["annotations"] = annotations
    plan.mq_clips.append(clip)
    plan.clip_spans.append((clip["clip_uid"], video_start, duration))


def _pick_template(
    rng: np.random.Generator, world: SyntheticWorld, objects: list[int], places: list[int]
) -> tuple[_Template, int] | None:
    """A random template and an entity not yet asked about in this clip (None when none is left)."""
    for t in rng.permutation(len(_TEMPLATES)):
        template = _TEMPLATES[int(t)]
        pool = places if template.kind == "place" else objects
        for entity in pool:
            if template.kind != "container" or world.entities[entity] in _CONTAINERS:
                pool.remove(entity)
                return template, entity
    return None


def _nlq_window(entry_start: float, entry_end: float, video_start: float) -> dict:
    video_start_sec = round(video_start + entry_start, 7)
    video_end_sec = round(video_start + entry_end, 7)
    return {
        "clip_start_sec": entry_start,
        "clip_end_sec": entry_end,
        "video_start_sec": video_start_sec,
        "video_end_sec": video_end_sec,
        "video_start_frame": _frame(video_start_sec),
        "video_end_frame": _frame(video_end_sec),
    }


def _null_query(rng: np.random.Generator, duration: float, video_start: float) -> dict:
    """An entry without text, as in the real files: skipped by readers, but it keeps its query_idx."""
    start = round(float(rng.uniform(0.0, duration - 4.0)), 5)
    entry = _nlq_window(start, round(start + 4.0, 5), video_start)
    entry.update(template=None, query=None, slot_x=None, verb_x=None, slot_y=None, verb_y=_NO_VERB)
    entry["raw_tags"] = [None, None, None, None, None, _NO_VERB]
    return entry


def _plan_nlq_clip(
    world: SyntheticWorld, spec: ScaleSpec, rng: np.random.Generator, plan: _VideoPlan, video_start: float,
    duration: float, null_query: bool, zero_length: bool,
) -> None:  # fmt: skip
    clip = _clip_header(_uid(rng), _uid(rng), video_start, duration)
    objects = rng.permutation(world.num_objects).tolist()
    places = (world.num_objects + rng.permutation(len(world.entities) - world.num_objects)).tolist()
    max_window = min(_WINDOW_SEC[1], _MAX_WINDOW_FRACTION * duration)
    annotations = []
    for a in range(int(rng.integers(spec.annotations_per_nlq_clip[0], spec.annotations_per_nlq_clip[1] + 1))):
        annotation_uid = _uid(rng)
        queries: list[dict] = []
        for q in range(int(rng.integers(spec.queries_per_annotation[0], spec.queries_per_annotation[1] + 1))):
            if null_query and a == 0 and q == 1:
                queries.append(_null_query(rng, duration, video_start))
                continue
            picked = _pick_template(rng, world, objects, places)
            if picked is None:
                break
            template, entity = picked
            word = world.entities[entity]
            when, verb = str(rng.choice(["before", "after"])), str(rng.choice(_EVENT_VERBS))
            text = template.text.format(x=word, when=when, y=verb)
            if zero_length and a == 0 and q == 0:
                start = end = round(float(rng.uniform(1.0, duration - 1.0)), 5)
                shown = (start - 0.5, start + 0.5)
            else:
                length = _log_uniform(rng, _WINDOW_SEC[0], max_window)
                start = round(float(rng.uniform(0.0, duration - length)), 5)
                end = round(start + length, 5)
                shown = (start, end)
            amp = float(rng.uniform(*_ENTITY_AMP))
            plan.events.append(_Event("entity", entity, video_start + shown[0], video_start + shown[1], amp))
            plan.texts.append((clip["clip_uid"], annotation_uid, q, text))
            if plan.split == "test":
                queries.append({"query": text})
                continue
            slot_y = verb if template.slot_y == "{y}" else template.slot_y
            verb_y = verb if template.verb_y == "{y}" else template.verb_y
            entry = _nlq_window(start, end, video_start)
            entry.update(template=template.template, query=text, slot_x=word, verb_x=template.verb_x,
                         slot_y=slot_y, verb_y=verb_y)  # fmt: skip
            entry["raw_tags"] = [template.template, text, word, template.verb_x, slot_y, verb_y]
            queries.append(entry)
        annotations.append({"language_queries": queries, "annotation_uid": annotation_uid})
    clip["annotations"] = annotations
    unused = objects + places
    plan.events += _entity_events(rng, unused, int(rng.integers(0, 3)), duration, video_start)
    ambient = _place_actions(rng, duration, world.num_classes, draws=(1, 2), per_class=(1, 3))
    plan.events += _action_events(rng, ambient, video_start)
    plan.nlq_clips.append(clip)
    plan.clip_spans.append((clip["clip_uid"], video_start, duration))


def _plan_video(
    world: SyntheticWorld, spec: ScaleSpec, rng: np.random.Generator, split: str, flags: _VideoFlags
) -> _VideoPlan:
    """Clips laid end to end on one video (random gaps), with their annotations and latent events."""
    plan = _VideoPlan(video_uid=_uid(rng), split=split, duration=0.0)
    tasks = ["mq"] * spec.mq_clips_per_video + ["nlq"] * spec.nlq_clips_per_video
    tasks = [tasks[int(i)] for i in rng.permutation(len(tasks))]
    if flags.negative_start:  # the real clips that start before their video are MQ clips
        tasks.insert(0, tasks.pop(tasks.index("mq")))
    cursor = _NEGATIVE_CLIP_START if flags.negative_start else float(rng.uniform(0.5, 30.0))
    low, high = spec.clip_seconds
    nlq_seen = mq_seen = 0
    for task in tasks:
        duration = round(float(rng.uniform(low, high)), 5) if high > low else float(low)
        video_start = round(cursor, 7)
        if task == "mq":
            _plan_mq_clip(world, rng, plan, video_start, duration, flags.force_non_primary and mq_seen == 0,
                          flags.mq_classes[mq_seen])  # fmt: skip
            mq_seen += 1
        else:
            _plan_nlq_clip(world, spec, rng, plan, video_start, duration,
                           null_query=flags.null_query and nlq_seen == 0,
                           zero_length=nlq_seen < flags.zero_length_clips)  # fmt: skip
            nlq_seen += 1
        cursor = video_start + duration + float(rng.uniform(1.0, 20.0))
    plan.duration = round(cursor, 5)
    return plan


def _latent_timeline(world: SyntheticWorld, rng: np.random.Generator, plan: _VideoPlan) -> tuple[np.ndarray, float]:
    """The video's latent timeline averaged over 32-frame windows.

    Returns ``(windowed, t0)``: row ``j`` of ``windowed`` is the mean of the latent (plus, in the
    last column, the transition level) over the 32 frames centred at video time
    ``t0 + (j + 4) * 4 / 30``; sample it with :func:`_sample`.
    """
    t0 = -_PAD_BINS * _BIN_SEC
    num_bins = int(math.ceil((plan.duration - t0) / _BIN_SEC)) + _PAD_BINS
    centres = t0 + (np.arange(num_bins) + 0.5) * _BIN_SEC
    latent = np.zeros((num_bins, world.num_channels + 1))  # last column: transition level
    for event in plan.events:
        if event.kind == "action":
            _add_action(latent, centres, world, event)
        else:
            _add_entity(latent, centres, world, event)
    knots = rng.standard_normal((int((centres[-1] - t0) / _SCENE_KNOT_SEC) + 2, _SCENE_CHANNELS)) * _SCENE_STD
    position = (centres - t0) / _SCENE_KNOT_SEC
    index = np.floor(position).astype(int)
    frac = position - index
    smooth = (frac * frac * (3.0 - 2.0 * frac))[:, None]
    latent[:, world.scene_channels] = knots[index] * (1.0 - smooth) + knots[index + 1] * smooth
    latent[:, world.nuisance_channels] = rng.standard_normal((num_bins, _NUISANCE_CHANNELS)) * _NUISANCE_STD
    cumulative = np.concatenate([np.zeros((1, latent.shape[1])), np.cumsum(latent, axis=0)])
    windowed = (cumulative[_WINDOW_BINS:] - cumulative[:-_WINDOW_BINS]) / _WINDOW_BINS
    return windowed, t0


def _bins_between(centres: np.ndarray, start: float, end: float) -> slice:
    return slice(int(np.searchsorted(centres, start)), int(np.searchsorted(centres, end, side="right")))


def _add_action(latent: np.ndarray, centres: np.ndarray, world: SyntheticWorld, event: _Event) -> None:
    """Class bump over the instance, start/end pulses and transition level at its boundaries."""
    length = event.end - event.start
    inside = _bins_between(centres, event.start, event.end)
    u = (centres[inside] - event.start) / length
    latent[inside, event.index] += event.amp * (_ACTION_FLOOR + (1.0 - _ACTION_FLOOR) * np.sin(np.pi * u) ** 2)
    frac, low, high = _BOUNDARY_WIDTH
    width = min(max(frac * length, low), high)
    for channel, at in ((world.start_channel, event.start), (world.end_channel, event.end)):
        near = _bins_between(centres, at - 4.0 * width, at + 4.0 * width)
        pulse = np.exp(-0.5 * ((centres[near] - at) / width) ** 2)
        latent[near, channel] += _BOUNDARY_AMP * pulse
        latent[near, -1] += pulse


def _add_entity(latent: np.ndarray, centres: np.ndarray, world: SyntheticWorld, event: _Event) -> None:
    """A plateau over the appearance with smooth 0.5 s ramps centred on its ends."""
    ramp = min(_ENTITY_RAMP, max(event.end - event.start, 0.1))
    near = _bins_between(centres, event.start - ramp, event.end + ramp)
    t = centres[near]
    rise = np.clip((t - event.start) / ramp + 0.5, 0.0, 1.0)
    fall = np.clip((event.end - t) / ramp + 0.5, 0.0, 1.0)
    shape = rise * rise * (3 - 2 * rise) * fall * fall * (3 - 2 * fall)
    latent[near, world.entity_channel(event.index)] += event.amp * shape


def _sample(windowed: np.ndarray, t0: float, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of the windowed timeline at video times (seconds)."""
    position = (times - t0) / _BIN_SEC - _WINDOW_BINS // 2
    index = np.clip(np.floor(position).astype(int), 0, len(windowed) - 2)
    frac = np.clip(position - index, 0.0, 1.0)[:, None]
    return windowed[index] * (1.0 - frac) + windowed[index + 1] * frac


def _features(
    world: SyntheticWorld, rng: np.random.Generator, source: SourceSpec, windowed: np.ndarray, t0: float,
    times: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Float32 ``[len(times), dim]`` features of one source at the given video times."""
    rows = _sample(windowed, t0, times)
    latent = rows[:, :-1].astype(np.float32)
    noise_scale = _FEATURE_NOISE * (1.0 + _TRANSITION_NOISE * np.clip(rows[:, -1], 0.0, 1.0))
    noise = rng.standard_normal((len(times), source.dim), dtype=np.float32) * noise_scale[:, None].astype(np.float32)
    feats = world.scales[source.name] * (latent @ world.maps[source.name]) + world.biases[source.name] + noise
    return np.ascontiguousarray(feats, dtype=np.float32)


def _save(tensor_data: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.from_numpy(np.array(tensor_data, dtype=np.float32, copy=True)), path)


def _write_video_features(
    out: Path, world: SyntheticWorld, rng: np.random.Generator, plan: _VideoPlan
) -> dict[str, int]:
    """Render the latent timeline and write every source's files and the query token features."""
    windowed, t0 = _latent_timeline(world, rng, plan)
    written: dict[str, int] = {}
    num_vectors = official_feature_count(_frame(plan.duration))
    for source in world.sources:
        if source.layout == "video":
            feats = _features(world, rng, source, windowed, t0, video_feature_times(num_vectors))
            _save(feats, out / "features" / source.name / f"{plan.video_uid}.pt")
            written[source.name] = written.get(source.name, 0) + 1
            continue
        for clip_uid, video_start, duration in plan.clip_spans:
            times = video_start + clip_feature_times(clip_feature_count(duration))
            _save(_features(world, rng, source, windowed, t0, times), out / "features" / source.name / f"{clip_uid}.pt")
            written[source.name] = written.get(source.name, 0) + 1
    for clip_uid, annotation_uid, query_idx, text in plan.texts:
        tokens = tokenize_query(text)
        if not 0 < len(tokens) <= MAX_QUERY_TOKENS:
            raise AssertionError(f"synthetic query {text!r} has {len(tokens)} tokens, expected 1..{MAX_QUERY_TOKENS}")
        rows = np.stack([world.word_embedding(token) for token in tokens])
        rows = rows + _TEXT_NOISE * rng.standard_normal(rows.shape)
        _save(rows, out / "features" / TEXT_SOURCE / clip_uid / f"{annotation_uid}_{query_idx}.pt")
        written[TEXT_SOURCE] = written.get(TEXT_SOURCE, 0) + 1
    return written


def _assign_splits(seed: int, num_videos: int) -> list[str]:
    """About 60 / 20 / 20 % of the videos to train / val / test, at least one each."""
    num_val = max(1, round(0.2 * num_videos))
    num_test = max(1, round(0.2 * num_videos))
    names = ["train"] * (num_videos - num_val - num_test) + ["val"] * num_val + ["test"] * num_test
    order = _rng(seed, "splits").permutation(num_videos)
    splits = [""] * num_videos
    for position, video in enumerate(order):
        splits[int(video)] = names[position]
    return splits


def _video_flags(spec: ScaleSpec, splits: list[str], num_classes: int, seed: int) -> list[_VideoFlags]:
    """Place the special cases, and deal every class to the MQ clips of every split.

    The classes are dealt round-robin (in a seeded order) over the MQ clips of each split, so
    every class has instances in every split that has at least as many clip slots as classes
    allow (always in train and val at the default sizes).
    """
    flags = [_VideoFlags() for _ in splits]
    train = [i for i, split in enumerate(splits) if split == "train"]
    first = flags[train[0]]
    first.negative_start = spec.negative_clip_start
    first.null_query = True
    first.force_non_primary = True
    remaining = spec.zero_length_train
    for i in train:
        flags[i].zero_length_clips = min(remaining, spec.nlq_clips_per_video)
        remaining -= flags[i].zero_length_clips
    if spec.null_query_val:
        flags[splits.index("val")].null_query = True
    rng = _rng(seed, "deal")
    for split in SPLITS:
        slots = [i for i, name in enumerate(splits) if name == split for _ in range(spec.mq_clips_per_video)]
        order = rng.permutation(num_classes).tolist()
        for j, video in enumerate(slots):
            flags[video].mq_classes.append(tuple(order[j :: len(slots)]))
    return flags


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear what an earlier ``egoasl synth`` wrote there; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise EgoaslError(f"{out}: exists and is not a folder; --out needs a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synthetic.json").is_file():
            found = sorted(p.name for p in out.iterdir())[:5]
            raise EgoaslError(
                f"{out}: folder is not empty (holds {', '.join(found)}) and has no synthetic.json from an earlier "
                "`egoasl synth`; choose a new or empty folder"
            )
        for name in ("annotations", "features"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        (out / "synthetic.json").unlink()
    (out / "annotations").mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _header(task: str, split: str, seed: int, scale: str) -> dict:
    name = "Moments Queries annotations" if task == "mq" else "NLQ Annotations"
    kind = "test, unannotated" if split == "test" else split
    return {
        "version": "v2",
        "date": "230101",
        "description": f"{name} ({kind}) -- SYNTHETIC (egoasl synth, scale {scale}, seed {seed})",
        "manifest": "s3://ego4d-consortium-sharing/public/v2/full_scale/manifest.csv",
    }


def _count(summary: SyntheticSummary, plan: _VideoPlan) -> None:
    split = plan.split
    summary.videos[split] += 1
    summary.mq_clips[split] += len(plan.mq_clips)
    summary.mq_instances[split] += plan.instances
    for clip in plan.mq_clips:
        for annotation in clip.get("annotations", []):
            for label in annotation["labels"]:
                key = summary.mq_primary_labels if label["primary"] else summary.mq_non_primary_labels
                key[split] += 1
    summary.nlq_clips[split] += len(plan.nlq_clips)
    for clip in plan.nlq_clips:
        summary.nlq_annotations[split] += len(clip["annotations"])
        for annotation in clip["annotations"]:
            for query in annotation["language_queries"]:
                if query.get("query"):
                    summary.nlq_queries[split] += 1
                else:
                    summary.nlq_null_queries[split] += 1
                if "clip_end_sec" in query and query["clip_end_sec"] == query["clip_start_sec"]:
                    summary.nlq_zero_length[split] += 1


def generate_synthetic(
    out: str | Path,
    seed: int = 0,
    videos: int | None = None,
    classes: int | None = None,
    scale: str = "demo",
    progress: bool = False,
) -> SyntheticSummary:
    """Write a synthetic Ego4D MQ + NLQ dataset in the official layout under ``out``.

    Args:
        out: a new or empty folder, or one written by an earlier call (its ``annotations/``,
            ``features/`` and ``synthetic.json`` are replaced; nothing else is touched).
        seed: the same seed gives byte-identical files.
        videos: number of canonical videos (at least 3: one per split); default per scale.
        classes: number of MQ classes (2-110), taken from the official labels; default per scale.
        scale: ``"tiny"``, ``"demo"`` or ``"full"`` (see :data:`SCALES`).
        progress: show a progress bar over the videos.

    Returns:
        The counts and feature sources, also written to ``out/synthetic.json``.
    """
    spec = _scale_spec(scale)
    num_videos = spec.videos if videos is None else int(videos)
    if num_videos < 3:
        raise EgoaslError(f"--videos must be at least 3 (one video per split), got {num_videos}")
    if seed < 0:
        raise EgoaslError(f"--seed must be a non-negative integer, got {seed}")
    world = build_world(seed, classes, scale)
    out = Path(out)
    _prepare_out(out)
    splits = _assign_splits(seed, num_videos)
    flags = _video_flags(spec, splits, world.num_classes, seed)
    summary = SyntheticSummary(
        scale=scale, seed=seed, classes=list(world.labels), sources=list(world.sources), text_dim=world.text_dim
    )
    mq_videos: dict[str, list[dict]] = {split: [] for split in SPLITS}
    nlq_videos: dict[str, list[dict]] = {split: [] for split in SPLITS}
    durations: dict[str, float] = {}
    for i in tqdm(range(num_videos), desc="synthetic videos", unit="video", disable=not progress):
        rng = _rng(seed, "video", i)
        plan = _plan_video(world, spec, rng, splits[i], flags[i])
        for name, count in _write_video_features(out, world, rng, plan).items():
            summary.feature_files[name] = summary.feature_files.get(name, 0) + count
        mq_videos[plan.split].append({"video_uid": plan.video_uid, "split": plan.split, "clips": plan.mq_clips})
        nlq_videos[plan.split].append({"video_uid": plan.video_uid, "clips": plan.nlq_clips, "split": plan.split})
        durations[plan.video_uid] = plan.duration
        _count(summary, plan)
    for split in SPLITS:
        mq = {**_header("mq", split, seed, scale), "videos": mq_videos[split]}
        _write_json(out / "annotations" / MQ_FILES[split], mq)
        nlq = {**_header("nlq", split, seed, scale), "videos": nlq_videos[split]}
        _write_json(out / "annotations" / NLQ_FILES[split], nlq)
    summary.video_durations = durations
    _write_json(out / "synthetic.json", summary.to_dict())
    return summary
