"""Predict a large image with an exported bioseg model, using numpy, onnxruntime and the model's metadata."""

import itertools
import json
import sys

import numpy as np
import onnxruntime as ort


def normalise(image, norm):
    """(C, *spatial) -> float32 scaled per channel as in training."""
    image = image.astype(np.float32)
    if norm["mode"] == "none":
        return image
    if norm["mode"] == "per_image":
        lo, hi = np.percentile(image.reshape(len(image), -1), norm["percentiles"], axis=1)
    else:
        lo, hi = np.asarray(norm["low"], np.float32), np.asarray(norm["high"], np.float32)
    shape = (-1,) + (1,) * (image.ndim - 1)
    return (image - lo.reshape(shape)) / np.maximum(hi - lo, 1e-6).reshape(shape).astype(np.float32)


def starts(size, tile, overlap, align):
    """Tile origins spread evenly from 0 to size - tile, all but the last on multiples of align (the
    network's pooling grid, so that tiles predict the pixels they share alike)."""
    step = max(1, int(tile * (1 - overlap)))
    align = align if step >= align else 1
    step -= step % align
    units = -(-(size - tile) // align)
    n = -(-units * align // step) + 1
    if n == 1:
        return [0]
    return [align * ((2 * i * units + n - 1) // (2 * (n - 1))) for i in range(n - 1)] + [size - tile]


def window(tile):
    """Gaussian blending weights, sigma = tile / 8, never below 1e-3."""
    w = np.ones(())
    for t in tile:
        x = np.arange(t) - (t - 1) / 2
        w = np.multiply.outer(w, np.exp(-(x**2) / (2 * (t / 8) ** 2)))
    return np.maximum(w, 1e-3).astype(np.float32)


def predict(model_path, raw):
    """raw (C, *spatial) -> {head: labels}: normalise, tile, blend the probabilities, threshold/argmax."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["bioseg"])
    image = normalise(raw, meta["normalization"])
    tile, spatial = meta["tile_size"], image.shape[1:]
    short = [max(t - s, 0) for s, t in zip(spatial, tile, strict=True)]  # axes shorter than a tile: mirror
    pad = [(0, 0)] + [(n // 2, n - n // 2) for n in short]
    image = np.pad(image, pad, mode="reflect")
    w = window(tile)
    sums, weight = {}, np.zeros(image.shape[1:], np.float32)
    aligns = meta["size_divisor"]
    grid = [starts(s, t, meta["overlap"], a) for s, t, a in zip(image.shape[1:], tile, aligns, strict=True)]
    for origin in itertools.product(*grid):
        region = tuple(slice(o, o + t) for o, t in zip(origin, tile, strict=True))
        outputs = session.run(None, {meta["input"]: image[(slice(None), *region)][None]})
        for name, probs in zip(meta["heads"], outputs, strict=True):
            sums.setdefault(name, np.zeros((probs.shape[1], *image.shape[1:]), np.float32))
            sums[name][(slice(None), *region)] += probs[0] * w
        weight[region] += w
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pad[1:], spatial, strict=True))
    labels = {}
    for name, head in meta["heads"].items():
        probs = (sums[name] / weight)[(slice(None), *crop)]
        labels[name] = probs[0] > head["threshold"] if head["type"] == "binary" else probs.argmax(0)
    return labels


if __name__ == "__main__":  # python onnx_predict.py model.onnx image.npy labels.npy
    raw = np.load(sys.argv[2])
    first = next(iter(predict(sys.argv[1], raw if raw.ndim > 2 else raw[None]).values()))
    np.save(sys.argv[3], first.astype(np.uint8))
