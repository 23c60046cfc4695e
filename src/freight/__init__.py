"""Freight: a self-hosted batch inference service.

`freight.map(table, prompt=...)` runs a prompt over the rows of a table in Python
(service/table_map.py); it is imported on first use, so `import freight` stays cheap.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["map"]


def __getattr__(name: str) -> Any:
    if name == "map":
        from freight.service.table_map import map_table

        return map_table
    raise AttributeError(f"module 'freight' has no attribute {name!r}")
