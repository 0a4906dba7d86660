import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_iou

from bioseg.errors import BiosegError
from bioseg.metrics import SemanticMeter, confusion_matrix, scores_from_confusion


def brute_force_scores(pred: np.ndarray, target: np.ndarray, num_classes: int, valid=None) -> dict:
    """Reference written independently: boolean masks per class, no confusion matrix."""
    if valid is not None:
        pred, target = pred[valid], target[valid]
    out = {}
    for c in range(num_classes):
        p, t = pred == c, target == c
        inter, union = np.sum(p & t), np.sum(p | t)
        out[f"dice/{c}"] = 1.0 if union == 0 else 2 * inter / (p.sum() + t.sum())
        out[f"iou/{c}"] = 1.0 if union == 0 else inter / union
    out["dice_mean"] = np.mean([out[f"dice/{c}"] for c in range(1, num_classes)])
    out["iou_mean"] = np.mean([out[f"iou/{c}"] for c in range(1, num_classes)])
    out["accuracy"] = np.mean(pred == target)
    return out


def brute_force_confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        cm[t, p] += 1
    return cm


def assert_scores_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("shape", [(33, 34), (7, 9, 11), (2, 17, 18)])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_against_brute_force(shape, num_classes):
    rng = np.random.default_rng(sum(shape) + num_classes)
    target = rng.integers(0, num_classes, shape)
    pred = np.where(rng.random(shape) < 0.7, target, rng.integers(0, num_classes, shape))
    cm = confusion_matrix(pred, target, num_classes)
    assert cm.dtype == torch.int64 and cm.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(cm.numpy(), brute_force_confusion(pred, target, num_classes))
    assert_scores_equal(scores_from_confusion(cm), brute_force_scores(pred, target, num_classes))


def test_against_monai_dice_and_iou():
    rng = np.random.default_rng(3)
    target = torch.as_tensor(rng.integers(0, 3, (1, 17, 18, 19)))
    pred = torch.as_tensor(rng.integers(0, 3, (1, 17, 18, 19)))
    pred[0, :4] = 2  # class 0 then missed in part: scores differ per class
    scores = scores_from_confusion(confusion_matrix(pred, target, 3))

    def onehot(x):
        return torch.nn.functional.one_hot(x, 3).movedim(-1, 1).float()

    dice = compute_dice(onehot(pred), onehot(target), include_background=True, ignore_empty=False)[0]
    iou = compute_iou(onehot(pred), onehot(target), include_background=True, ignore_empty=False)[0]
    for c in range(3):
        assert scores[f"dice/{c}"] == pytest.approx(float(dice[c]), abs=1e-6)
        assert scores[f"iou/{c}"] == pytest.approx(float(iou[c]), abs=1e-6)


def test_against_sklearn_if_available():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    target = rng.integers(0, 4, (33, 34))
    pred = np.where(rng.random((33, 34)) < 0.6, target, rng.integers(0, 4, (33, 34)))
    labels = list(range(4))
    cm = confusion_matrix(pred, target, 4)
    want = metrics.confusion_matrix(target.ravel(), pred.ravel(), labels=labels)
    np.testing.assert_array_equal(cm.numpy(), want)
    scores = scores_from_confusion(cm)
    f1 = metrics.f1_score(target.ravel(), pred.ravel(), labels=labels, average=None)
    jac = metrics.jaccard_score(target.ravel(), pred.ravel(), labels=labels, average=None)
    for c in labels:
        assert scores[f"dice/{c}"] == pytest.approx(f1[c])
        assert scores[f"iou/{c}"] == pytest.approx(jac[c])
    assert scores["accuracy"] == pytest.approx(metrics.accuracy_score(target.ravel(), pred.ravel()))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_mask_with_itself_scores_one(num_classes):
    labels = torch.arange(33 * 34).reshape(33, 34) % num_classes
    scores = scores_from_confusion(confusion_matrix(labels, labels, num_classes))
    assert all(v == 1.0 for v in scores.values())


def test_disjoint_masks_score_zero():
    target = torch.zeros(20, 21, dtype=torch.long)
    target[:10] = 1
    pred = 1 - target
    scores = scores_from_confusion(confusion_matrix(pred, target, 2))
    assert scores["dice/1"] == 0 and scores["iou/1"] == 0 and scores["dice/0"] == 0
    assert scores["dice_mean"] == 0 and scores["accuracy"] == 0


def test_iou_dice_identity_and_accuracy():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (40, 41))
    pred = np.where(rng.random((40, 41)) < 0.5, target, rng.integers(0, 3, (40, 41)))
    scores = scores_from_confusion(confusion_matrix(pred, target, 3))
    for c in range(3):
        dice = scores[f"dice/{c}"]
        assert 0 < dice < 1
        assert scores[f"iou/{c}"] == pytest.approx(dice / (2 - dice))
    assert scores["accuracy"] == pytest.approx(np.mean(pred == target))


def test_binary_mean_is_foreground_only():
    target = torch.zeros(10, 10, dtype=torch.long)
    target[2:6, 2:6] = 1  # 16 pixels
    pred = torch.zeros_like(target)
    pred[2:6, 2:4] = 1  # 8 of them
    scores = scores_from_confusion(confusion_matrix(pred, target, 2), class_names=["bg", "cell"])
    assert scores["dice/cell"] == pytest.approx(2 * 8 / (16 + 8))
    assert scores["dice_mean"] == scores["dice/cell"]
    assert scores["iou_mean"] == pytest.approx(8 / 16)
    assert scores["dice/bg"] == pytest.approx(2 * 84 / (84 + 92))
    assert scores["accuracy"] == pytest.approx(92 / 100)


def test_absent_classes():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 3, 1, 1])
    scores = scores_from_confusion(confusion_matrix(pred, target, 4))
    assert scores["dice/2"] == 1.0 and scores["iou/2"] == 1.0  # absent from both
    assert scores["dice/3"] == 0.0 and scores["iou/3"] == 0.0  # predicted, absent from truth
    assert scores["dice_mean"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    missed = scores_from_confusion(confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 1]), 2))
    assert missed["dice/1"] == 0.0  # present in truth, never predicted


def test_valid_mask_excludes_pixels():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 3, (17, 18, 19))
    pred = rng.integers(0, 3, (17, 18, 19))
    valid = rng.random((17, 18, 19)) < 0.6
    target_ignored = np.where(valid, target, 255)  # labels outside the valid mask may be anything
    cm = confusion_matrix(pred, target_ignored, 3, valid=valid)
    assert int(cm.sum()) == valid.sum()
    np.testing.assert_array_equal(cm.numpy(), brute_force_confusion(pred[valid], target[valid], 3))
    assert_scores_equal(scores_from_confusion(cm), brute_force_scores(pred, target, 3, valid))
    # a mask broadcast over the batch axis
    cm_b = confusion_matrix(pred, target, 3, valid=torch.as_tensor(valid[:1]).expand(17, -1, -1))
    assert int(cm_b.sum()) == 17 * valid[0].sum()


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 3, (2, 9, 10, 11)).astype(np.uint8)
    pred = rng.integers(0, 3, (2, 9, 10, 11)).astype(np.int32)
    from_numpy = confusion_matrix(pred, target, 3)
    from_torch = confusion_matrix(torch.as_tensor(pred), torch.as_tensor(target), 3)
    mixed = confusion_matrix(torch.as_tensor(pred), target, 3)
    assert torch.equal(from_numpy, from_torch) and torch.equal(from_numpy, mixed)
    assert int(from_numpy.sum()) == target.size
    bool_cm = confusion_matrix(pred == 1, target == 1, 2)
    assert int(bool_cm[1, 1]) == np.sum((pred == 1) & (target == 1))


def test_meter_pools_pixels_over_images():
    rng = np.random.default_rng(4)
    images = [(rng.integers(0, 3, s), rng.integers(0, 3, s)) for s in [(5, 6), (30, 31), (7, 7)]]
    meter = SemanticMeter(3, class_names=["bg", "a", "b"])
    per_image = [scores_from_confusion(meter.update(p, t), ["bg", "a", "b"]) for p, t in images]
    pooled_pred = np.concatenate([p.ravel() for p, _ in images])
    pooled_target = np.concatenate([t.ravel() for _, t in images])
    want = brute_force_scores(pooled_pred, pooled_target, 3)
    got = meter.compute()
    for c, name in enumerate(["bg", "a", "b"]):
        assert got[f"dice/{name}"] == pytest.approx(want[f"dice/{c}"])
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    # dataset-level Dice is pooled, not the mean of per-image Dice
    assert got["dice/a"] != pytest.approx(np.mean([s["dice/a"] for s in per_image]))
    assert per_image[0]["accuracy"] == pytest.approx(np.mean(images[0][0] == images[0][1]))
    meter.reset()
    assert int(meter.confusion.sum()) == 0


def test_empty_selection():
    cm = confusion_matrix(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long), 2,
                          valid=torch.zeros(4, 4, dtype=torch.bool))
    scores = scores_from_confusion(cm)
    assert int(cm.sum()) == 0 and scores["dice_mean"] == 1.0 and math.isnan(scores["accuracy"])


def test_input_errors():
    a = torch.zeros(4, 5, dtype=torch.long)
    with pytest.raises(BiosegError, match="same shape"):
        confusion_matrix(a, torch.zeros(5, 4, dtype=torch.long), 2)
    with pytest.raises(BiosegError, match="argmax"):
        confusion_matrix(a.float(), a, 2)
    with pytest.raises(BiosegError, match=r"\[0, 2\].*num_classes is 2"):
        confusion_matrix(a + 2, a, 2)
    with pytest.raises(BiosegError, match="bool"):
        confusion_matrix(a, a, 2, valid=a)
    with pytest.raises(BiosegError, match="class names"):
        scores_from_confusion(torch.zeros(3, 3), ["a", "b"])
    with pytest.raises(BiosegError, match=r"\(C, C\)"):
        scores_from_confusion(torch.zeros(1, 1))
