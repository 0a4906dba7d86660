"""Procedural insect-wing images with four exact masks, for multi-task tests, examples and the demo.

One image shows one wing (a forewing like a planthopper's tegmen) on a light scanner background, with
four heads of ground truth:

- ``wing``: the filled outline, an elongated leaf shape: a base-to-apex axis of length L, two half-width
  profiles ``t**a * (1 - t)**b`` (t = position along the axis, 0 at the base) perturbed by a few smooth
  harmonics, and a slight bend. Random size, aspect, orientation and position; always fully inside.
- ``domains``: pigmentation domains, 0 outside the wing and 1..n from base to apex: the wing is cut
  across its length by gently tilted, wavy boundaries. Domain k always wears pigment k (its colour,
  jittered per wing, and its dominant texture: fine mottling, coarse blotches or stripes along the
  veins), so that a domain's class can be told from its look, as a biologist tells pigment types apart.
- ``veins``: a branching network: 2–3 stems leave one point at the base, split into veins that fan out to
  the apex and the margin (fewer in a small wing), some veins fork again, and short cross-veins join
  neighbours in the distal part. Veins are 2–4 px wide (stems widest; a vein one pixel wide has no
  inside to agree on), clipped to the wing; drawn with low contrast (slightly darker or, less often,
  lighter than the membrane). Veins under a spot stay in the mask, hidden in the image.
- ``spots``: a few (1–8) small dark elliptical spots, mostly in the basal half, apart from each other and
  from the margin.

Acquisition: translucent membrane over the background, darker margin, smooth illumination gradient
(a random plane plus blotches), optical blur, Gaussian noise, uint8 quantisation.

Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives identical arrays. At most
about 50 ms per 256² image on one busy core. Sizes below 64 px work, but spots and thin domains may vanish.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from bioseg.demos.cells2d import _check_size
from bioseg.demos.noise import fine_texture, smooth_noise
from bioseg.errors import BiosegError

__all__ = ["HEADS", "make_wing", "write_wing_dataset"]

#: head name → output channels of a model trained on this data (domains: background + up to 4 domains)
HEADS: dict[str, int] = {"wing": 1, "veins": 1, "spots": 1, "domains": 5}

# Pigment k of domain k (RGB in [0, 1]): pale straw, brick red, dark brown, blue-grey, greyish pink, olive.
_PIGMENTS = np.array(
    [
        [0.84, 0.77, 0.56],
        [0.66, 0.30, 0.24],
        [0.40, 0.28, 0.20],
        [0.52, 0.56, 0.62],
        [0.74, 0.56, 0.58],
        [0.55, 0.58, 0.32],
    ]
)
# Each pigment's texture: amplitudes of fine mottling, coarse blotches and stripes (the dominant one first).
_PIGMENT_TEXTURES = np.array(
    [
        [0.10, 0.02, 0.00],
        [0.02, 0.12, 0.00],
        [0.02, 0.02, 0.06],
        [0.08, 0.02, 0.00],
        [0.02, 0.10, 0.00],
        [0.02, 0.02, 0.05],
    ]
)


class _Wing:
    """Wing geometry in its own frame: ``t`` along the axis (0 base, 1 apex), ``v`` across, in units of L.

    A point at relative position ``s`` across the wing (-1 lower margin, 0 midline, +1 upper margin) lies
    at ``v = bend(t) + s * half_width(t)``, so curves at fixed ``s`` follow the outline.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        aspect = rng.uniform(2.4, 3.6)  # length / full width
        self.bend_amp = rng.uniform(-0.05, 0.05)
        # Half-widths tabulated finely once: the image needs them at every pixel.
        self.grid = np.linspace(0.0, 1.0, 2049)
        k = np.arange(1, 5)[:, None]
        self.tables, self.widths = [], []
        for _side in range(2):  # upper, lower
            width = 0.5 / aspect * rng.uniform(0.8, 1.2)
            a, b = rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5)  # blunt base, rounded apex
            amp, phase = rng.normal(0, 0.06, (4, 1)) / k, rng.uniform(0, 2 * np.pi, (4, 1))
            wobble = np.clip(1 + np.sum(amp * np.sin(k * np.pi * self.grid + phase), axis=0), 0.7, 1.3)
            profile = self.grid**a * (1 - self.grid) ** b / ((a / (a + b)) ** a * (b / (a + b)) ** b)
            self.tables.append(width * profile * wobble)
            self.widths.append(width)

    def half_width(self, t: np.ndarray, side: int) -> np.ndarray:
        """Half-width on the upper (side 0) or lower (side 1) side at ``t``; 0 outside [0, 1]."""
        return np.interp(t, self.grid, self.tables[side], left=0.0, right=0.0)

    def bend(self, t: np.ndarray) -> np.ndarray:
        return self.bend_amp * 4 * t * (1 - t)

    def v_of(self, t: np.ndarray, s: np.ndarray) -> np.ndarray:
        return self.bend(t) + s * np.where(s >= 0, self.half_width(t, 0), self.half_width(t, 1))

    def v_range(self) -> tuple[float, float]:
        bend = self.bend(self.grid)
        return float((bend - self.tables[1]).min()), float((bend + self.tables[0]).max())


def _check_n_domains(n_domains: int | None, rng: np.random.Generator) -> int:
    if n_domains is None:
        return int(rng.integers(2, 5))
    if isinstance(n_domains, bool) or not isinstance(n_domains, int | np.integer) or not 1 <= n_domains <= 6:
        raise BiosegError(
            f"n_domains={n_domains!r} must be a whole number from 1 to 6, or None for 2–4 at random"
        )
    return int(n_domains)


def _rasterise(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], out: np.ndarray) -> None:
    """Set the pixels of the polyline through ``(ys, xs)`` in ``out``, resampled every 0.4 px so that the
    line is connected."""
    steps = np.hypot(np.diff(ys), np.diff(xs))
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    if arc[-1] <= 0:
        return
    pos = np.arange(0.0, arc[-1] + 0.4, 0.4)
    yi = np.rint(np.interp(pos, arc, ys)).astype(np.intp)
    xi = np.rint(np.interp(pos, arc, xs)).astype(np.intp)
    ok = (yi >= 0) & (yi < shape[0]) & (xi >= 0) & (xi < shape[1])
    out[yi[ok], xi[ok]] = True


def _vein_paths(rng: np.random.Generator, max_veins: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Vein centre lines in the wing frame as ``(t, s, width_px)``: stems, their veins, forks, cross-veins.
    At most ``max_veins`` veins reach the margin (plus forks), so that small wings are not filled."""
    paths: list[tuple[np.ndarray, np.ndarray, int]] = []
    n_stems = int(rng.integers(2, 4))
    children = [int(rng.integers(2, 4)) for _ in range(n_stems)]
    while sum(children) > max(max_veins, n_stems):  # drop veins from the busiest stem
        children[int(np.argmax(children))] -= 1
    # Where each vein meets the margin, from -1 (lower margin, mid-wing) through 0 (apex) to +1.
    ends = np.clip(np.linspace(-1, 1, sum(children)) + rng.normal(0, 0.05, sum(children)), -1, 1)
    longitudinal: list[tuple[np.ndarray, np.ndarray]] = []
    t_base = rng.uniform(0.01, 0.04)  # all stems leave one point at the base
    slot = 0
    for stem in range(n_stems):
        mine = ends[slot : slot + children[stem]]
        slot += children[stem]
        t_split = rng.uniform(0.12, 0.35)
        s_split = 0.6 * float(mine.mean())
        t = np.linspace(t_base, t_split, 60)
        paths.append((t, s_split * ((t - t_base) / (t_split - t_base)) ** 0.7, int(rng.integers(2, 4))))
        for e in mine:
            # Veins run out to the margin (|s| slightly above 1, clipped by the outline) spread along the
            # distal half; only the middle ones reach the apex, where they would otherwise all converge.
            t_end = 0.99 - 0.45 * abs(float(e))
            s_end = float(np.sign(e)) * 1.08 * min(1.0, abs(float(e)) / 0.15)
            t = np.linspace(t_split, t_end, 160)
            r = (t - t_split) / (t_end - t_split)
            wiggle = 0.015 * np.sin(2 * np.pi * rng.uniform(1, 3) * r + rng.uniform(0, 2 * np.pi)) * r
            s = s_split + (s_end - s_split) * r ** rng.uniform(0.8, 1.6) + wiggle
            paths.append((t, s, 2 if rng.random() < 0.3 else 1))
            longitudinal.append((t, s))
            if rng.random() < 0.5 * min(1.0, max_veins / 6):  # fork towards the apex
                i = int(rng.integers(int(0.3 * t.size), int(0.7 * t.size)))
                tb, sb = t[i:], s[i:]
                rb = (tb - tb[0]) / max(tb[-1] - tb[0], 1e-6)
                fork = sb + rng.choice([-1, 1]) * rng.uniform(0.12, 0.3) * rb**1.2
                paths.append((tb, fork, 1))
                longitudinal.append((tb, fork))
    n_cross = int(rng.integers(1, 4) * min(4.0, max(max_veins, 1) / 2))
    for _ in range(n_cross):  # short cross-veins between neighbouring veins
        tc = rng.uniform(0.4, 0.92)
        here = sorted(float(np.interp(tc, t, s)) for t, s in longitudinal if t[0] <= tc <= t[-1])
        if len(here) < 2:
            continue
        j = int(rng.integers(len(here) - 1))
        s = np.linspace(here[j], here[j + 1], 20)
        paths.append((tc + np.linspace(0, rng.normal(0, 0.01), 20), s, 1))
    return paths


def make_wing(
    size: tuple[int, int] = (256, 256), *, seed: int, n_domains: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One synthetic wing image and its four masks.

    Args:
        size: image shape ``(Y, X)``.
        seed: seed for ``np.random.default_rng``; the same seed gives identical arrays.
        n_domains: number of pigmentation domains (1–6); None draws 2–4.

    Returns:
        ``(image, masks)``: image uint8 ``(Y, X, 3)`` RGB; masks, each uint8 ``(Y, X)``: ``wing`` 0/1,
        ``veins`` 0/1, ``spots`` 0/1, ``domains`` 0 outside the wing and 1..n_domains inside
        (``domains > 0`` equals ``wing``; veins and spots lie inside the wing).
    """
    shape = _check_size(size)
    rng = np.random.default_rng(seed)
    n_dom = _check_n_domains(n_domains, rng)
    ny, nx = shape
    wing = _Wing(rng)

    # Pose: random angle, then the largest length that keeps the rotated bounding box inside, times a fill.
    angle = rng.uniform(0, 2 * np.pi)
    eu = np.array([np.sin(angle), np.cos(angle)])  # (y, x) of the base → apex axis
    ev = np.array([np.cos(angle), -np.sin(angle)])
    v_lo, v_hi = wing.v_range()
    corners = np.array([u * eu + v * ev for u in (0.0, 1.0) for v in (v_lo, v_hi)])  # for L = 1
    extent = corners.max(0) - corners.min(0)
    length = rng.uniform(0.7, 0.92) * min(ny / extent[0], nx / extent[1])
    slack = np.array([ny, nx]) - length * extent
    base = -length * corners.min(0) + rng.uniform(0.0, 1.0, 2) * slack

    dy, dx = np.arange(ny)[:, None] - base[0], np.arange(nx)[None, :] - base[1]
    t = (dy * eu[0] + dx * eu[1]) / length
    v = (dy * ev[0] + dx * ev[1]) / length - wing.bend(t)
    up, lo = wing.half_width(t, 0), wing.half_width(t, 1)
    inside = (t > 0) & (t < 1) & (v < up) & (v > -lo)

    # Domains: n - 1 tilted, wavy cuts across the wing, spaced so that no two cross.
    edges = np.linspace(0.12, 0.9, n_dom + 1)
    seg = edges[1] - edges[0]
    cuts = edges[1:-1] + rng.uniform(-0.25, 0.25, n_dom - 1) * seg
    v_norm = v / max(wing.widths)
    domains = np.ones(shape, np.uint8)
    for c in cuts:
        tilt, amp = rng.uniform(-0.15, 0.15) * seg, rng.uniform(0, 0.08) * seg
        boundary = c + tilt * v_norm + amp * np.sin(rng.uniform(2, 5) * v_norm + rng.uniform(0, 2 * np.pi))
        domains += (t > boundary).astype(np.uint8)
    domains[~inside] = 0

    # Veins: rasterise centre lines per width, thicken, keep inside the wing.
    scale = length / 256.0
    centre = {w: np.zeros(shape, bool) for w in (1, 2, 3)}
    # Veins about 8 px apart at the widest point at most: fewer veins in a small wing.
    max_veins = int(length * (wing.widths[0] + wing.widths[1]) / 8)
    for tv, sv, width in _vein_paths(rng, max_veins):
        vv = wing.v_of(tv, sv)
        py = base[0] + length * (tv * eu[0] + vv * ev[0])
        px = base[1] + length * (tv * eu[1] + vv * ev[1])
        _rasterise(py, px, shape, centre[width])
    cross = ndi.generate_binary_structure(2, 1)
    veins = (
        ndi.binary_dilation(centre[1], structure=np.ones((2, 2), bool))
        | ndi.binary_dilation(centre[2], structure=cross)
        | ndi.binary_dilation(ndi.binary_dilation(centre[3], structure=np.ones((2, 2), bool)), structure=cross)
    ) & inside

    # Spots: rejection-sample centres in the basal part, away from the margin and from each other.
    depth = ndi.distance_transform_edt(inside)
    spots = np.zeros(shape, bool)
    spot_alpha = np.zeros(shape)
    placed: list[tuple[float, float, float]] = []
    m = min(ny, nx)
    for _ in range(int(rng.integers(1, 9))):
        r = rng.uniform(0.01, 0.022) * m
        for _try in range(30):
            ts, ss = rng.uniform(0.08, 0.7), rng.uniform(-0.75, 0.75)
            vs = float(wing.v_of(np.array([ts]), np.array([ss]))[0])
            cy = base[0] + length * (ts * eu[0] + vs * ev[0])
            cx = base[1] + length * (ts * eu[1] + vs * ev[1])
            iy, ix = int(round(cy)), int(round(cx))
            if not (0 <= iy < ny and 0 <= ix < nx) or depth[iy, ix] < r * 1.5 + 2:
                continue
            if all(np.hypot(cy - py, cx - px) > (r + pr) * 1.3 + 3 for py, px, pr in placed):
                break
        else:
            continue
        placed.append((cy, cx, r))
        elong, phi = rng.uniform(1.0, 1.6), rng.uniform(0, np.pi)
        reach = int(np.ceil(r * elong)) + 3
        y0, y1 = max(iy - reach, 0), min(iy + reach + 1, ny)
        x0, x1 = max(ix - reach, 0), min(ix + reach + 1, nx)
        sy, sx = np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx
        a = (sy * np.sin(phi) + sx * np.cos(phi)) / (r * np.sqrt(elong))
        b = (sy * np.cos(phi) - sx * np.sin(phi)) * np.sqrt(elong) / r
        rel = np.hypot(a, b)
        spots[y0:y1, x0:x1] |= rel < 1
        spot_alpha[y0:y1, x0:x1] = np.maximum(spot_alpha[y0:y1, x0:x1], 1 / (1 + np.exp((rel - 1) * 8)))
    spots &= inside

    # --- appearance ------------------------------------------------------------------------------
    fine = fine_texture(rng, shape, rng.uniform(0.7, 1.5))
    coarse = smooth_noise(rng, shape, int(rng.integers(5, 13)))
    stripes = np.sin(2 * np.pi * v * length / (rng.uniform(4, 9) * scale) + 3 * coarse)
    colours = _PIGMENTS[:n_dom] * rng.uniform(0.92, 1.08, (n_dom, 1)) + rng.normal(0, 0.02, (n_dom, 3))
    colour_lut = np.concatenate([np.zeros((1, 3)), np.clip(colours, 0.05, 0.95)])
    amplitudes = _PIGMENT_TEXTURES[:n_dom] * rng.uniform(0.7, 1.3, (n_dom, 3))
    mix = np.concatenate([np.zeros((1, 3)), amplitudes])
    weights = mix[domains]  # (Y, X, 3): per-domain amplitude of fine, coarse, stripes
    texture = 1 + weights[..., 0] * fine + weights[..., 1] * coarse + weights[..., 2] * stripes
    membrane = colour_lut[domains] * texture[..., None]

    background = rng.uniform(0.78, 0.95) + rng.normal(0, 0.02, 3)
    image = np.broadcast_to(background, (ny, nx, 3)).copy()
    opacity = rng.uniform(0.8, 0.95)
    image[inside] = opacity * membrane[inside] + (1 - opacity) * image[inside]
    margin = inside & (depth <= 1.5 * max(scale, 0.5))
    image[margin] *= rng.uniform(0.6, 0.85)

    vein_alpha = ndi.gaussian_filter(veins.astype(np.float64), 0.5)[..., None]
    contrast = rng.uniform(0.25, 0.45)  # faint beside the margin and the spots, yet visible to the eye
    if rng.random() < 0.75:
        image *= 1 - contrast * vein_alpha
    else:
        image += contrast * vein_alpha * (1 - image)
    spot_colour = rng.uniform(0.04, 0.18) + rng.normal(0, 0.02, 3)
    image = image * (1 - spot_alpha[..., None]) + spot_alpha[..., None] * spot_colour

    gy, gx = np.linspace(-0.5, 0.5, ny)[:, None], np.linspace(-0.5, 0.5, nx)[None, :]
    direction = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.25) * (gy * np.sin(direction) + gx * np.cos(direction))
    light = light + rng.uniform(0.02, 0.06) * smooth_noise(rng, shape, int(rng.integers(1, 4)))
    image *= light[..., None]
    sigma = rng.uniform(0.4, 1.0) * max(scale, 0.5)
    image = ndi.gaussian_filter(image, (sigma, sigma, 0))
    image += rng.normal(0, rng.uniform(0.005, 0.025), image.shape)
    image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)

    masks = {
        "wing": inside.astype(np.uint8),
        "veins": veins.astype(np.uint8),
        "spots": spots.astype(np.uint8),
        "domains": domains,
    }
    return image, masks


def _split_counts(n: int, split: tuple[float, float, float]) -> list[int]:
    """Images per part: largest remainders, then at least one in every part with a positive share."""
    shares = np.array(split, dtype=np.float64) * n
    counts = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(3):
        if split[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return [int(c) for c in counts]


def write_wing_dataset(
    root: str | Path,
    n: int,
    *,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write ``n`` synthetic wings in the multitask layout and return ``root``.

    Layout: ``root/<part>/images/wing_000.jpg`` (RGB, JPEG quality 95) and
    ``root/<part>/masks/<head>/wing_000_seg_<head>.tif`` (uint8) for the heads wing, veins, spots and
    domains, with ``<part>`` in train, val, test. ``split`` gives the shares of the three parts (summing
    to 1); every part with a positive share gets at least one image when ``n`` allows, and a part with
    none is not created. Image ``i`` uses a seed derived from ``seed`` and ``i``.
    """
    import imageio.v3 as iio
    import tifffile

    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise BiosegError(f"n={n!r} must be a whole number >= 1")
    _check_size(size)
    try:
        shares = tuple(float(s) for s in split)
    except (TypeError, ValueError):
        shares = ()
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        raise BiosegError(
            f"split={split!r} must be three non-negative shares (train, val, test) that sum to 1, "
            "e.g. (0.7, 0.15, 0.15)"
        )
    root = Path(root)
    seeds = np.random.SeedSequence(seed).generate_state(int(n))
    width = max(3, len(str(int(n) - 1)))
    counts = _split_counts(int(n), shares)
    parts = [p for p, c in zip(("train", "val", "test"), counts, strict=True) for _ in range(c)]
    for i, (part, image_seed) in enumerate(zip(parts, seeds, strict=True)):
        image, masks = make_wing(size, seed=int(image_seed))
        name = f"wing_{i:0{width}d}"
        (root / part / "images").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / part / "images" / f"{name}.jpg", image, extension=".jpg", quality=95)
        for head, mask in masks.items():
            folder = root / part / "masks" / head
            folder.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / f"{name}_seg_{head}.tif", mask)
    return root
