"""A synthetic Ego4D Episodic Memory dataset in the official layout (the demo's and tests' data).

:func:`generate_synthetic` writes, under one folder::

    annotations/moments_{train,val,test_unannotated}.json   official MQ nesting (test: no annotations)
    annotations/nlq_{train,val,test_unannotated}.json       official NLQ nesting (test: only ``query``)
    annotations/narration.json                              official narration layout, every video (NaQ)
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

Narrations (:mod:`~egoasl.data.synthetic.narrations`): two passes narrate every entity
appearance (naming the entity, every 2-4 s while it shows) and every action instance, from a
random stream of their own: many more (narration, time) pairs than NLQ queries, with the same
signal, for narration pre-training (``egoasl naq build``).

Clips are laid end to end on their video with random gaps (MQ and NLQ clips on the same videos,
never sharing a uid); above the tiny scale one train MQ clip starts 0.0123 s before its video,
as 90 real clips do. Videos are split about 60/20/20 % into train/val/test (at least one each).

Learnability (seed 0, demo scale): a naive per-frame 1-D conv classifier with thresholded
segments reaches an average MQ mAP of about 0.84 on val, and a bilinear text-frame scorer an NLQ
R@1@0.3 of about 0.77, each in well under a CPU minute, so the demo's bars are clearly reachable.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, purpose, index)``:
the same seed gives byte-identical JSON and tensors. ``synthetic.json`` also records every
video's duration (``video_durations``, like ``duration_sec`` of the real ``ego4d.json``).

``egoasl synth --difficulty hard`` (:mod:`~egoasl.data.synthetic.difficulty`) makes the signal
harder: class-specific evidence profiles (onset-, centre- or offset-heavy classes), class
prototypes sharing half their energy, 3x the feature noise and 0.8 s annotator jitter.

Modules, one concept each: ``vocabulary`` (labels, entity words, query tokens), ``difficulty``, ``timing``
(frame and feature-vector times, :class:`SourceSpec`), ``scales`` (the ``--scale`` presets),
``seeding`` (random streams and uids), ``world`` (the hidden model), ``plan`` (a video's clips
and latent events), ``mq_clips`` and ``nlq_clips`` (one clip of each task), ``videos`` (splits,
special cases, clips laid on a video), ``timeline`` (latent timeline to features), ``features``
(the feature files), ``summary`` (``synthetic.json``) and ``generate`` (:func:`generate_synthetic`).
"""

from egoasl.data.ego4d import SPLITS
from egoasl.data.synthetic.features import TEXT_SOURCE
from egoasl.data.synthetic.generate import MQ_FILES, NLQ_FILES, generate_synthetic
from egoasl.data.synthetic.scales import SCALES, ScaleSpec
from egoasl.data.synthetic.summary import SyntheticSummary, load_summary
from egoasl.data.synthetic.timing import (
    CLIP_RATE,
    FPS,
    VIDEO_STRIDE_FRAMES,
    VIDEO_WINDOW_FRAMES,
    SourceSpec,
    clip_feature_count,
    clip_feature_times,
    official_feature_count,
    video_feature_times,
)
from egoasl.data.synthetic.vocabulary import (
    MAX_QUERY_TOKENS,
    OBJECTS,
    OFFICIAL_MQ_LABELS,
    PLACES,
    RAW_TOOL_LABELS,
    tokenize_query,
)
from egoasl.data.synthetic.world import SyntheticWorld, build_world

__all__ = [
    "CLIP_RATE", "FPS", "MAX_QUERY_TOKENS", "MQ_FILES", "NLQ_FILES", "OBJECTS", "OFFICIAL_MQ_LABELS", "PLACES",
    "RAW_TOOL_LABELS", "SCALES", "SPLITS", "TEXT_SOURCE", "VIDEO_STRIDE_FRAMES", "VIDEO_WINDOW_FRAMES",
    "ScaleSpec", "SourceSpec", "SyntheticSummary", "SyntheticWorld", "build_world", "clip_feature_count",
    "clip_feature_times", "generate_synthetic", "load_summary", "official_feature_count", "tokenize_query",
    "video_feature_times",
]  # fmt: skip
