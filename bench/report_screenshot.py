"""Open a Snakemake report in headless Chromium: screenshots and the rendered DOM.

    python bench/report_screenshot.py report.html OUT_DIR [--result _curves.png]

Writes OUT_DIR/report_landing.png (the report as it opens) and
OUT_DIR/report_result.png (a copy of the report that, once loaded, shows the
first result whose path ends with --result, as a click on it would), and
checks that the rendered page holds that result as an <img> with a PNG data
URI. Exit status 0 when it does. Needs Debian's `chromium` (or CHROMIUM=path).

The report is a React app with no URL routing, so the copy appends a script
that calls the app's own `setView` after load; Chromium's virtual time budget
lets that script and React's rendering run before the screenshot is taken.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]

SHOW_RESULT = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var key = Object.keys(results).find(function (k) { return k.endsWith(%(suffix)r); });
    if (key === undefined) { document.title = "NO RESULT ENDING WITH %(suffix)s"; return; }
    var entry = results[key];
    app.setView({navbarMode: "resultinfo", content: "img", contentPath: entry.data_uri,
                 resultPath: key});
  }, 300);
});
</script>
"""


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium / chromium-browser / google-chrome."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def _run(chromium: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False)


def screenshot(chromium: str, html: Path, png: Path, *, size: str = "1280,2000",
               budget_ms: int = 8000, timeout: int = 120) -> Path:
    """Load `html` and save a screenshot to `png` (RuntimeError naming Chromium's output)."""
    png.unlink(missing_ok=True)
    done = _run(chromium, [f"--screenshot={png.resolve()}", f"--window-size={size}",
                           f"--virtual-time-budget={budget_ms}", html.resolve().as_uri()],
                timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {html} (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return png


def rendered_dom(chromium: str, html: Path, *, budget_ms: int = 8000,
                 timeout: int = 120) -> str:
    """The DOM of `html` after its scripts ran (Chromium's --dump-dom)."""
    done = _run(chromium, [f"--virtual-time-budget={budget_ms}", "--dump-dom",
                           html.resolve().as_uri()], timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium could not render {html}: {done.stderr[-2000:]}")
    return done.stdout


def copy_showing_result(report: Path, suffix: str, out: Path) -> Path:
    """A copy of `report` that opens the first result ending with `suffix` after load."""
    text = report.read_text(encoding="utf-8")
    end = text.rfind("</body>")
    if end < 0:
        raise ValueError(f"{report}: no </body>; is it a Snakemake report?")
    out.write_text(text[:end] + SHOW_RESULT % {"suffix": suffix} + text[end:], encoding="utf-8")
    return out


def shows_png(dom: str, suffix: str) -> bool:
    """Whether the rendered DOM holds an <img> of a PNG result whose name ends with `suffix`."""
    pattern = r'<img src="data:image/png;[^"]*filename=[^";]*' + re.escape(suffix) + r';base64,'
    return re.search(pattern, dom) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--result", default="_curves.png",
                        help="open the first result whose path ends with this")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no chromium found (apt-get install chromium, or set CHROMIUM)", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    landing = screenshot(chromium, args.report, args.out_dir / "report_landing.png")
    shown = copy_showing_result(args.report, args.result, args.out_dir / "report_result.html")
    result = screenshot(chromium, shown, args.out_dir / "report_result.png")
    ok = shows_png(rendered_dom(chromium, shown), args.result)
    print(f"{landing}\n{result}\nrendered result image: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
