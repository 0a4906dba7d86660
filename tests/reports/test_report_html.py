"""The report's markup: tables sort by number, images are embedded, nothing refers outside the file."""

import base64
import re

from bioseg.reports.report_html import Section, image_tag, page, preformatted, table


def test_table_cells_carry_their_numbers_for_sorting_and_escape_text():
    html = table([{"image": "<a&b>", "dice": 0.5, "n": 3}, {"image": "c", "dice": float("nan")}], key="t")
    assert '<table class="sortable" id="t">' in html
    assert "&lt;a&amp;b&gt;" in html and "<a&b>" not in html
    assert '<td class="num" data-v="0.5">0.5000</td>' in html
    assert '<td class="num" data-v="3.0">3</td>' in html
    assert '<td class="num" data-v="nan">n/a</td>' in html
    assert html.count("<th>") == 3  # columns: the keys of all rows, first seen first
    assert "<td></td>" in html  # a row without the column


def test_a_table_that_does_not_sort_has_no_sortable_class():
    assert "sortable" not in table([{"a": 1}], sortable=False)


def test_images_are_embedded_as_png_data_urls(tmp_path):
    png = b"\x89PNG\r\n\x1a\nfake"
    (tmp_path / "x.png").write_bytes(png)
    tag = image_tag(tmp_path / "x.png", "the <curve>")
    url = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
    assert base64.b64decode(url) == png
    assert "the &lt;curve&gt;" in tag
    assert image_tag(png) == image_tag(tmp_path / "x.png")


def test_the_page_lists_its_sections_and_loads_nothing_from_elsewhere():
    doc = page("a <title>", "sub", [Section("one", "One", "<p>1</p>"), Section("two", "Two", preformatted("<x>"))])
    assert doc.startswith("<!DOCTYPE html>")
    assert '<a href="#one">One</a><a href="#two">Two</a>' in doc
    assert '<section id="two"><h2>Two</h2>' in doc and "&lt;x&gt;" in doc
    assert "<title>a &lt;title&gt;</title>" in doc
    assert not re.search(r'(src|href)="(?!#|data:)', doc)  # no file, no host: only anchors and data URLs
    assert "http" not in doc
