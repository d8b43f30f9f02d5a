"""Render the label emoji as 128x128 RGBA PNGs from Debian's Noto Color Emoji font (run once; the PNGs are committed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emoji_mirror.labels import EMOJI  # noqa: E402

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # apt-get install fonts-noto-color-emoji
BITMAP_SIZE = 109  # the only size the font's CBDT colour bitmaps come in
SIDE = 128
OUT_DIR = Path(__file__).resolve().parent.parent / "emoji_mirror" / "assets" / "emoji"


def render(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    """One emoji drawn in colour, trimmed to its pixels and centred on a transparent SIDE x SIDE square."""
    left, top, right, bottom = font.getbbox(char)
    canvas = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), char, font=font, embedded_color=True)
    glyph = canvas.crop(canvas.getbbox())
    glyph.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    square = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    square.paste(glyph, ((SIDE - glyph.width) // 2, (SIDE - glyph.height) // 2))
    return square


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--font", type=Path, default=FONT)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if not args.font.is_file():
        sys.exit(f"{args.font} not found: install it with `apt-get install fonts-noto-color-emoji` or pass --font")
    font = ImageFont.truetype(str(args.font), size=BITMAP_SIZE)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for label, char in EMOJI.items():
        render(char, font).save(args.out_dir / f"{label}.png", optimize=True)
        print(args.out_dir / f"{label}.png")


if __name__ == "__main__":
    main()
