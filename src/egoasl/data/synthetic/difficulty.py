"""How hard the synthetic signal is: ``egoasl synth --difficulty normal | hard``.

``normal`` is the demo's data (the package docstring's "The signal"): every class's evidence
peaks mid-instance, class prototypes are orthogonal, features have little noise and the
annotators agree to 0.25 s. A detector learns it quickly, and a constant down-weighting of
positives does as well there as class-aware sensitivity.

``hard`` is built to tell class-aware from constant weighting, and to be closer to real
egocentric features:

- **where the evidence lies depends on the class**: classes are dealt round-robin to three
  profiles, *onset-heavy* (a bump at 20 % of the instance), *centre-heavy* (at 50 %) and
  *offset-heavy* (at 80 %), each a Gaussian bump of width 12 % of the instance over a floor of
  0.1, so the frames that identify a class sit at a class-specific place;
- **overlapping class prototypes**: every class prototype shares a common component (half of
  its energy) with all others, so classes are told apart by the other half only;
- **noise**: three times the feature noise (0.45 per dimension) and weaker boundary patterns (0.4);
- **annotators disagree more**: start/end jittered by N(0, 0.8 s) instead of N(0, 0.25 s).

The ``normal`` values reproduce the generator byte for byte as it was before this switch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoasl.errors import EgoaslError


@dataclass(frozen=True)
class Difficulty:
    name: str
    action_floor: float  # evidence level everywhere inside an instance, as a fraction of its peak
    profile_centres: tuple[float, ...]  # where the evidence peaks (fraction of the instance), dealt by class
    profile_width: float | None  # Gaussian bump width (fraction of the instance); None: sin^2 over the instance
    prototype_overlap: float  # fraction of each class prototype's energy in a component shared by all classes
    feature_noise: float  # std of the per-dimension feature noise
    boundary_amp: float  # amplitude of the class-shared start/end patterns
    label_jitter_sec: float  # std of each annotator's start/end error

    def class_profile(self, class_index: int, u: np.ndarray) -> np.ndarray:
        """The evidence of class ``class_index`` over normalised positions ``u`` in [0, 1], peak 1."""
        if self.profile_width is None:
            shape = np.sin(np.pi * u) ** 2
        else:
            centre = self.profile_centres[class_index % len(self.profile_centres)]
            shape = np.exp(-0.5 * ((u - centre) / self.profile_width) ** 2)
        return self.action_floor + (1.0 - self.action_floor) * shape

    def profile_name(self, class_index: int) -> str:
        """``onset``, ``centre`` or ``offset``: where the class's evidence peaks."""
        if self.profile_width is None:
            return "centre"
        centre = self.profile_centres[class_index % len(self.profile_centres)]
        return "onset" if centre < 0.4 else "offset" if centre > 0.6 else "centre"


DIFFICULTIES = {
    "normal": Difficulty("normal", action_floor=0.25, profile_centres=(0.5,), profile_width=None,
                         prototype_overlap=0.0, feature_noise=0.15, boundary_amp=0.8, label_jitter_sec=0.25),
    "hard": Difficulty("hard", action_floor=0.1, profile_centres=(0.2, 0.5, 0.8), profile_width=0.12,
                       prototype_overlap=0.5, feature_noise=0.45, boundary_amp=0.4, label_jitter_sec=0.8),
}


def difficulty_spec(name: str) -> Difficulty:
    """The :class:`Difficulty` called ``name``; a clear error for any other name."""
    if name not in DIFFICULTIES:
        raise EgoaslError(f"--difficulty must be one of {', '.join(DIFFICULTIES)}, got {name!r}")
    return DIFFICULTIES[name]
