"""Print the N-th (1-based) ```bash block of README.md, verbatim, for CI to run."""

from __future__ import annotations

import re
import sys
from pathlib import Path


def blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


if __name__ == "__main__":
    n = int(sys.argv[1])
    found = blocks(Path(sys.argv[2] if len(sys.argv) > 2 else "README.md").read_text(encoding="utf-8"))
    if len(found) < n:
        sys.exit(f"README.md has {len(found)} bash blocks, expected at least {n}")
    sys.stdout.write(found[n - 1])
