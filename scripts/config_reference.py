"""Print the config reference (markdown) from the config dataclasses' metadata.

    python scripts/config_reference.py   # pasted into README.md "Config reference"
"""

import dataclasses

from distillq import config


def table(cls) -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
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


if __name__ == "__main__":
    for kind, cls in config.CONFIGS.items():
        print(f"**`configs/{kind}.toml`** ({cls.__doc__.strip()})\n")
        print(table(cls))
        print()
