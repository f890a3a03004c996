"""The page `dltrain serve` shows at `/`, in a real headless Chromium (Debian's `chromium`, driven by Playwright):
choose an image, see the top-k table. The screenshot is kept in the test's tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from serving import Server, b64, png, tiles, train_tiles

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="pip install 'dltrain[test]' installs Playwright")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (apt-get install chromium)")


def test_the_page_shows_the_top_classes_of_an_image(tmp_path: Path):
    run = train_tiles(tmp_path)
    server = Server(run, "--api-key-env", "PAGE_KEY", key="k3y", env={"PAGE_KEY": "k3y"}).wait()
    x, _ = tiles(1, seed=11)
    image = png(np.kron(x[0], np.ones((4, 4))))  # 32x32: the server resizes it to the model's 8x8
    (tmp_path / "tile.png").write_bytes(image)
    expected = server.predict({"instances": [b64(image)]})[2]["top_k"][0]
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            # With --api-key-env the page needs the key too: the browser sends it with every request.
            page = browser.new_page(extra_http_headers={"Authorization": "Bearer k3y"})
            page.goto(server.base + "/")
            assert page.title() == "dltrain serve: tiles"
            page.set_input_files("#file", str(tmp_path / "tile.png"))
            page.wait_for_selector("#topk", timeout=30_000)
            rows = page.locator("#topk tr").all_inner_texts()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
    finally:
        code, _, err = server.stop()
    assert code == 0, err
    shown = [row.split("\t")[:2] for row in rows[1:]]
    assert [name for name, _ in shown] == [c["class"] for c in expected]
    assert [float(p) for _, p in shown] == pytest.approx([c["probability"] for c in expected], abs=1e-4)
    assert (tmp_path / "page.png").stat().st_size > 1000
