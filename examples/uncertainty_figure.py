"""Image with its predicted labels beside the uncertainty map, for one 2D image and one or more runs.

    python examples/uncertainty_figure.py IMAGE OUT.png RUN [RUN ...] [--tta]

The uncertainty is the entropy of the mean probability: 0 where every member and view is sure and
agrees, 1 for an even split. With several members or views, the mutual information between them (the part
of the uncertainty that comes from their disagreement) is shown as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bioseg.data.dataset import read_input
from bioseg.inference.predictor import Predictor
from bioseg.reports.charts import new_figure, overlay_rgb, save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tta", action="store_true", help="average the flipped and turned views")
    args = parser.parse_args()
    predictor = Predictor.from_runs(args.runs, tta=args.tta)
    raw = read_input(args.image, predictor.cfg.data, predictor.spatial_dims)
    prediction = predictor.predict(raw, str(args.image))
    head = next(iter(prediction.labels))
    classes = predictor.cfg.heads[head].classes
    panels = [("image and predicted labels", overlay_rgb(raw, prediction.labels[head], classes), None)]
    panels.append(("uncertainty: entropy of the mean", prediction.uncertainty[head], "magma"))
    if head in prediction.mutual_information:
        panels.append(("disagreement: mutual information", prediction.mutual_information[head], "magma"))
    fig = new_figure((3.6 * len(panels), 3.8))
    for i, (title, array, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        shown = ax.imshow(array, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
        if cmap:
            fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    print(save_figure(fig, args.out, dpi=110))


if __name__ == "__main__":
    main()
