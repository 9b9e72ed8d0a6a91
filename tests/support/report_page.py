"""Reading the report page's embedded data (`shared.core.report.page_data`) in tests."""

from __future__ import annotations

import json
import re

from shared.core.report.page_data import FINDING_COLUMNS, LB_COLUMNS, unpack


def embedded(page: str | bytes) -> dict:
    """The page's data: load balancers and findings as dicts, pictures as {lb key: SVG}."""
    if isinstance(page, bytes):
        page = page.decode("utf-8")
    raw = json.loads(re.search(r'<script type="application/json" id="hairpin-data">(.*?)'
                               r'</script>', page, re.S).group(1))
    pictures = {}
    for chunk in raw["pictures"]:
        pictures.update(unpack(chunk))
    return {"lbs": [dict(zip(LB_COLUMNS, r, strict=True)) for r in raw["lbs"]],
            "findings": [dict(zip(FINDING_COLUMNS, r, strict=True))
                         for r in unpack(raw["findings"])],
            "pictures": pictures, "subs": raw["subs"], "rgs": raw["rgs"]}
