"""Mark every test by the folder it lives in, so `-m unit` / `-m integration` select by layer."""

from pathlib import Path

import pytest

_LAYER = {
    "unit": "unit",
    "golden": "unit",
    "properties": "unit",
    "contract": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "browser": "e2e",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        rel = Path(item.fspath).relative_to(root)
        layer = _LAYER.get(rel.parts[0]) if len(rel.parts) > 1 else None
        if layer:
            item.add_marker(getattr(pytest.mark, layer))
