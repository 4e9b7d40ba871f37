"""A video's latent timeline, and each source's features sampled from it."""

from __future__ import annotations

import math

import numpy as np

from egoasl.data.synthetic.plan import Event, VideoPlan
from egoasl.data.synthetic.timing import FPS, VIDEO_WINDOW_FRAMES, SourceSpec
from egoasl.data.synthetic.world import NUISANCE_CHANNELS, SCENE_CHANNELS, SyntheticWorld

_BIN_FRAMES = 4  # latent timeline resolution: one bin per 4 frames (2/15 s)
_BIN_SEC = _BIN_FRAMES / FPS
_PAD_BINS = 16  # latent bins kept before t = 0 (clips may start slightly before the video)
_WINDOW_BINS = VIDEO_WINDOW_FRAMES // _BIN_FRAMES

# Signal constants (see the package docstring); the ones a difficulty sets are in world.difficulty.
_BOUNDARY_WIDTH = (0.15, 0.25, 0.8)  # fraction of the instance length, min and max seconds
_TRANSITION_NOISE = 1.5
_ENTITY_RAMP = 0.5
_SCENE_STD, _SCENE_KNOT_SEC = 0.35, 15.0
_NUISANCE_STD = 0.6


def latent_timeline(world: SyntheticWorld, rng: np.random.Generator, plan: VideoPlan) -> tuple[np.ndarray, float]:
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
    knots = rng.standard_normal((int((centres[-1] - t0) / _SCENE_KNOT_SEC) + 2, SCENE_CHANNELS)) * _SCENE_STD
    position = (centres - t0) / _SCENE_KNOT_SEC
    index = np.floor(position).astype(int)
    frac = position - index
    smooth = (frac * frac * (3.0 - 2.0 * frac))[:, None]
    latent[:, world.scene_channels] = knots[index] * (1.0 - smooth) + knots[index + 1] * smooth
    latent[:, world.nuisance_channels] = rng.standard_normal((num_bins, NUISANCE_CHANNELS)) * _NUISANCE_STD
    cumulative = np.concatenate([np.zeros((1, latent.shape[1])), np.cumsum(latent, axis=0)])
    windowed = (cumulative[_WINDOW_BINS:] - cumulative[:-_WINDOW_BINS]) / _WINDOW_BINS
    return windowed, t0


def _bins_between(centres: np.ndarray, start: float, end: float) -> slice:
    return slice(int(np.searchsorted(centres, start)), int(np.searchsorted(centres, end, side="right")))


def _add_action(latent: np.ndarray, centres: np.ndarray, world: SyntheticWorld, event: Event) -> None:
    """Class bump over the instance, start/end pulses and transition level at its boundaries."""
    length = event.end - event.start
    inside = _bins_between(centres, event.start, event.end)
    u = (centres[inside] - event.start) / length
    latent[inside, event.index] += event.amp * world.difficulty.class_profile(event.index, u)
    frac, low, high = _BOUNDARY_WIDTH
    width = min(max(frac * length, low), high)
    for channel, at in ((world.start_channel, event.start), (world.end_channel, event.end)):
        near = _bins_between(centres, at - 4.0 * width, at + 4.0 * width)
        pulse = np.exp(-0.5 * ((centres[near] - at) / width) ** 2)
        latent[near, channel] += world.difficulty.boundary_amp * pulse
        latent[near, -1] += pulse


def _add_entity(latent: np.ndarray, centres: np.ndarray, world: SyntheticWorld, event: Event) -> None:
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


def source_features(
    world: SyntheticWorld, rng: np.random.Generator, source: SourceSpec, windowed: np.ndarray, t0: float,
    times: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Float32 ``[len(times), dim]`` features of one source at the given video times."""
    rows = _sample(windowed, t0, times)
    latent = rows[:, :-1].astype(np.float32)
    noise_scale = world.difficulty.feature_noise * (1.0 + _TRANSITION_NOISE * np.clip(rows[:, -1], 0.0, 1.0))
    noise = rng.standard_normal((len(times), source.dim), dtype=np.float32) * noise_scale[:, None].astype(np.float32)
    feats = world.scales[source.name] * (latent @ world.maps[source.name]) + world.biases[source.name] + noise
    return np.ascontiguousarray(feats, dtype=np.float32)


