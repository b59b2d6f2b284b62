"""Print the config reference (markdown) from the config dataclasses' metadata.

    python scripts/config_reference.py           # print it
    python scripts/config_reference.py --write   # replace README.md's copy (between markers)
"""

import sys
from pathlib import Path

from distillq import config

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def table(cls) -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in config.ordered_fields(cls):
        v = f.default
        if isinstance(v, tuple):
            v = ",".join(map(str, v))
        bounds = []
        m = f.metadata
        if "choices" in m:
            bounds.append("one of " + "/".join(m["choices"]))
        if "min" in m:
            bounds.append(f">= {m['min']}")
        if "gt" in m:
            bounds.append(f"> {m['gt']}")
        if "max" in m:
            bounds.append(f"<= {m['max']}")
        extra = f" ({'; '.join(bounds)})" if bounds else ""
        rows.append(f"| `{f.name}` | `{v}` | {m['doc']}{extra} |")
    return "\n".join(rows)


def reference() -> str:
    parts = []
    for kind, cls in config.CONFIGS.items():
        parts.append(f"**`configs/{kind}.toml`** ({cls.__doc__.strip()})\n\n{table(cls)}\n")
    return "\n".join(parts)


def write_readme() -> None:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{reference()}{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print(reference())
