"""The `emoji-mirror` command: `streamlit run` on the checkout's app.py, further arguments passed on to Streamlit."""

from __future__ import annotations

import sys

from streamlit.web import cli  # what the `streamlit` command runs

from .paths import REPO_ROOT

APP = REPO_ROOT / "app.py"


def main(argv: list[str] | None = None) -> int:
    """Start the app (`emoji-mirror --server.port 8502` passes the flag on); 2 when app.py is not beside the package."""
    if not APP.is_file():
        print(f"error: {APP} not found: emoji-mirror starts the app of a source checkout; install it from one with `pip install -e .`", file=sys.stderr)
        return 2
    arguments = sys.argv[1:] if argv is None else argv
    return cli.main(["run", str(APP), *arguments], prog_name="streamlit")  # click exits with Streamlit's status
