"""clDice on hard masks: how well the centrelines of thin structures agree (2D and 3D).

Pixel overlap (Dice) barely notices a one-pixel gap in a vein or a vessel; clDice does, because it compares
each mask with the other's skeleton (Shit et al., CVPR 2021):

- topology precision ``Tprec = |skel(pred) ∩ truth| / |skel(pred)|``: how much of the predicted
  centreline runs inside the true structure (spurious branches lower it);
- topology sensitivity ``Tsens = |skel(truth) ∩ pred| / |skel(truth)|``: how much of the true
  centreline the prediction covers (breaks and missed branches lower it);
- ``clDice = 2 Tprec Tsens / (Tprec + Tsens)``.

Skeletons come from :func:`skimage.morphology.skeletonize` (Zhang's method in 2D, Lee's in 3D). Lee's
thinning can delete a tiny blob entirely (a 2×2×2 cube); such a component is kept whole as its own
skeleton, so every object of a mask is represented.

Empty masks, following the semantic scores' convention: both empty → all three scores are 1.0 (nothing
to find, nothing found); exactly one empty → all three are 0.0 (the ratio with an empty skeleton counts as
0, as does the harmonic mean of two zeros).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from bioseg.errors import BiosegError

__all__ = ["cldice_score", "topology_scores"]


def _as_mask(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        raise BiosegError(
            f"{what} has dtype {arr.dtype}; clDice scores hard masks: threshold probabilities first "
            "(e.g. prob > 0.5) or pass integer/bool masks"
        )
    if arr.ndim not in (2, 3):
        raise BiosegError(
            f"{what} has shape {arr.shape}; expected one 2D (Y, X) or 3D (Z, Y, X) mask: "
            "score each image of a batch on its own"
        )
    return arr != 0


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Skeleton of a bool mask, with every component the thinning deleted added back whole."""
    skel = skeletonize(mask)
    labels, count = ndi.label(mask, structure=np.ones((3,) * mask.ndim))
    kept = np.zeros(count + 1, bool)
    kept[labels[skel]] = True
    if not kept[1:].all():
        skel = skel | ((~kept)[labels] & mask)
    return skel


def topology_scores(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Topology precision, sensitivity and clDice of two hard masks.

    Args:
        pred: ``(Y, X)`` or ``(Z, Y, X)`` bool or integer mask; non-zero is foreground.
        truth: same shape as ``pred``.

    Returns:
        ``{"tprec": ..., "tsens": ..., "cldice": ...}``, each in [0, 1]; empty masks as in the module doc.
    """
    p = _as_mask(pred, "pred")
    t = _as_mask(truth, "truth")
    if p.shape != t.shape:
        raise BiosegError(f"pred has shape {p.shape} but truth has shape {t.shape}; they must be the same")
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return {"tprec": 1.0, "tsens": 1.0, "cldice": 1.0}
    if not p_any or not t_any:
        return {"tprec": 0.0, "tsens": 0.0, "cldice": 0.0}
    skel_p, skel_t = _skeleton(p), _skeleton(t)
    # Both skeletons are non-empty here: every component of a non-empty mask keeps a pixel.
    tprec = int(np.count_nonzero(skel_p & t)) / int(np.count_nonzero(skel_p))
    tsens = int(np.count_nonzero(skel_t & p)) / int(np.count_nonzero(skel_t))
    cldice = 0.0 if tprec + tsens == 0 else 2.0 * tprec * tsens / (tprec + tsens)
    return {"tprec": tprec, "tsens": tsens, "cldice": cldice}


def cldice_score(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    """clDice of two hard 2D or 3D masks (harmonic mean of topology precision and sensitivity).

    See :func:`topology_scores` for the arguments and the module doc for empty masks.
    """
    return topology_scores(pred, truth)["cldice"]
