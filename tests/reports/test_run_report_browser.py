"""report.html opened offline in headless Chromium: every section there, no broken image, tables sort."""

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_the_report_opens_offline_complete_and_sorts(object_run, browser, screenshots):
    context = browser.new_context(offline=True, viewport={"width": 1366, "height": 900})
    asked = []
    context.on("request", lambda r: asked.append(r.url))
    page = context.new_page()
    page.goto((object_run / "report.html").as_uri())
    headings = page.locator("section h2").all_inner_texts()
    assert headings[:4] == ["Summary", "Curves", "Scores per class and per image", "Worst images"]
    assert {"Objects", "Resolved config", "Package versions"} <= set(headings)
    images = page.locator("img")
    assert images.count() >= 5
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
    assert broken == 0
    assert {u.split(":")[0] for u in asked} <= {"file", "data"}  # nothing fetched from a host

    table = page.locator("#images-test")
    column = table.locator("th", has_text="dice_mean")
    index = table.locator("th").all_inner_texts().index("dice_mean")

    def values():
        return [float(v) for v in table.locator(f"tbody td:nth-child({index + 1})").all_inner_texts()]

    column.click()
    assert values() == sorted(values())
    column.click()
    assert values() == sorted(values(), reverse=True)
    page.screenshot(path=str(screenshots / "run_report.png"), full_page=False)
    context.close()
