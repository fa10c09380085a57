"""`/api/quality` and `/api/composite` over a stored file (`tickpipe serve`): no pipeline to
measure, so both say so and list nothing (the running pipeline's answers are tested in
tests/runners/test_composite_pipeline.py)."""

from __future__ import annotations

import httpx

from .conftest import Served


def test_over_a_stored_file_quality_and_composite_say_not_live(served: Served) -> None:
    quality = httpx.get(served.url + "/api/quality", timeout=10)
    composite = httpx.get(served.url + "/api/composite", timeout=10)
    assert (quality.status_code, quality.json()) == (200, {"live": False, "venues": []})
    assert (composite.status_code, composite.json()) == (200, {"live": False, "composites": []})
