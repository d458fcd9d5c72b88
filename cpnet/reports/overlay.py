"""A video with the predictions drawn on it, as mmaction2's demo writes: the top classes of the window that covers
each frame, and along the bottom a running timeline of the top class's probability with the current time marked.

Pure drawing on uint8 RGB frames (Pillow): :func:`draw_overlay` takes one frame and what to show on it; the
application decodes, looks up the window and encodes (``cpnet predict --overlay``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BAR = (255, 255, 255)
CURSOR = (255, 64, 64)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _font(height: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at a size that suits a frame ``height`` pixels tall (never a file from disk)."""
    size = max(10, height // 24)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def draw_overlay(frame: np.ndarray, top: Sequence[tuple[str, float]], *, time_s: float, duration_s: float,
                 track: Sequence[tuple[float, str, float]], names: Sequence[str]) -> np.ndarray:
    """``frame`` (uint8 (H, W, 3) RGB) with ``top`` ((class, probability), best first) written in a box at the top
    left, and at the bottom a strip of the whole video: ``track`` ((centre seconds, top class, its probability) of
    every window) as bars coloured by class (``names`` fixes the colours), and a cursor at ``time_s``."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    height, width = frame.shape[:2]
    font = _font(height)
    lines = [f"{name}  {100 * p:.1f}%" for name, p in top]
    line_h = font.getbbox("Ag")[3] + 4
    box_w = max((draw.textlength(line, font=font) for line in lines), default=0) + 12
    draw.rectangle([0, 0, box_w, line_h * len(lines) + 8], fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * line_h), line, font=font, fill=BAR if i else (255, 255, 0))
    strip = max(6, height // 12)
    top_y = height - strip
    draw.rectangle([0, top_y, width, height], fill=(0, 0, 0, 150))
    if track and duration_s > 0:
        step = duration_s / len(track)
        for centre, name, p in track:
            x0 = int((centre - step / 2) / duration_s * width)
            x1 = max(x0 + 1, int((centre + step / 2) / duration_s * width))
            colour = PALETTE[list(names).index(name) % len(PALETTE)] if name in names else BAR
            draw.rectangle([x0, height - 1 - int(p * (strip - 2)), x1, height - 1], fill=(*colour, 230))
    x = int(min(max(time_s / duration_s, 0.0), 1.0) * (width - 1)) if duration_s > 0 else 0
    draw.line([x, top_y, x, height], fill=CURSOR, width=2)
    return np.asarray(image)
