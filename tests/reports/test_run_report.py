"""report.html of a trained run: written by training, rewritten by evaluate and tune-instances, with the
versions that trained the model kept."""

import json
import re

from bioseg.reports.run_report import package_versions, record_versions, render_run_report, write_run_report

SECTIONS = ["summary", "curves", "scores", "worst", "instances", "config", "versions"]


def test_training_evaluate_and_tuning_fill_every_section(object_run):
    html = (object_run / "report.html").read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in html, key
    assert 'id="images-test"' in html and 'id="objects-test"' in html and 'id="tuning"' in html
    assert "tune-instances on val" in html
    assert "best epoch</td><td>" in html and "training</td><td>2 epoch(s)" in html
    assert html.count("data:image/png;base64,") >= 5  # curves, snapshot, worst overlays, object charts
    assert not re.search(r'(src|href)="(?!#|data:)', html)


def test_the_summary_counts_the_networks_parameters_and_gives_the_test_scores(object_run):
    from bioseg.nn.bundle import ModelBundle

    net = ModelBundle.load(object_run).net
    count = sum(p.numel() for p in net.parameters())
    html = (object_run / "report.html").read_text()
    assert f", {count:,} parameters</td>" in html and count > 100
    scores = json.loads((object_run / "predictions" / "test" / "metrics.json").read_text())["dataset"]
    assert f"test scores</td><td>Dice {scores['dice_mean']:.4f}, IoU {scores['iou_mean']:.4f} on 2 images" in html


def test_versions_are_those_of_the_training_and_survive_a_rewrite(object_run):
    recorded = json.loads((object_run / "versions.json").read_text())
    assert recorded["recorded_by"] == "training"  # evaluate and tune-instances rewrote the report since
    assert recorded["versions"] == package_versions()
    write_run_report(object_run, by="evaluate")
    assert json.loads((object_run / "versions.json").read_text()) == recorded
    assert f"recorded by training on {recorded['date']}" in (object_run / "report.html").read_text()


def test_a_folder_with_a_model_only_still_gets_a_report(tmp_path):
    html = render_run_report(tmp_path, by="evaluate")
    assert "not evaluated yet" in html and "(config.yaml is missing)" in html
    assert record_versions(tmp_path, "x")["recorded_by"] == "evaluate"  # the first writer named
    assert not list(tmp_path.glob(".report.html.tmp*"))
