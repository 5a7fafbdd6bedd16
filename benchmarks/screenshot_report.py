"""Screenshot an HTML report with headless Chromium: proof that the page renders from disk.

    python benchmarks/screenshot_report.py BUILD/report/index.html OUT.png [--width 1400]
        [--height 3000] [--chromium /usr/bin/chromium]

Chromium runs without network features (no QUIC, background networking, component updates or
sync) and with a throw-away profile, so a report that needs anything but local files shows
broken images. Install it on Debian with `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"


def chromium_command(
    chromium: str, html: Path, out: Path, profile: Path, width: int, height: int
) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        f"--window-size={width},{height}",
        html.resolve().as_uri(),
    ]


def screenshot(
    html: str | Path,
    out: str | Path,
    width: int = 1400,
    height: int = 3000,
    chromium: str = DEFAULT_CHROMIUM,
    timeout: float = 120.0,
) -> Path:
    """Render `html` to the PNG `out`; raises FileNotFoundError without Chromium or the page."""
    html, out = Path(html), Path(out).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no report at {html}: run the audit first")
    if not (Path(chromium).is_file() or shutil.which(chromium)):
        raise FileNotFoundError(
            f"chromium not found at {chromium}: install it with `apt-get install -y chromium`"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="conceptswap-chromium-") as profile:
        command = chromium_command(chromium, html, out, Path(profile), width, height)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(
            f"chromium wrote no screenshot (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the report, e.g. BUILD/report/index.html")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = screenshot(args.html, args.out, args.width, args.height, args.chromium)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size} bytes) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
