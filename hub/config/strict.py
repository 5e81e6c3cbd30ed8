"""The base of every closed section of connectors.yaml: an unknown key (a typo) is an error with a
position instead of a silently ignored setting; `populate_by_name` lets code build a model by its
Python names where the YAML key is a keyword (`from`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
