"""`hookhub check` reports route-level templates and mappings that do not parse, with positions."""

from __future__ import annotations

from pathlib import Path

from hub.config.check import check_file

CONFIG = """\
sources:
  a: {provider: typeform, secret: x}
destinations:
  out: {type: file, path: o.jsonl}
routes:
  - name: r
    from: [a]
    to:
      - destination: out
        template: "{{ name }} wrote {% if %}"
        map:
          email: "{{ email | lower }}"
          company: "{{ answers['Company'] | }}"
"""


def test_bad_route_templates_are_reported_at_their_position(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    code, text = check_file(path)
    assert code == 1
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert lines[0].startswith(f"{path}:10:19: routes[r].to[0].template: invalid template:")
    assert lines[1].startswith(f"{path}:13:20: routes[r].to[0].map.company: invalid template:")
