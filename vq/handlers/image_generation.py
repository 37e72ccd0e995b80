"""image-generation: a PNG of the requested size, drawn from the prompt with Pillow.

Stands in for a text-to-image model: a two-colour gradient and a few translucent shapes whose
colours and places come from a hash of the prompt (one prompt, one picture), with the prompt
written across it so people can tell the images apart. Width and height come from data or
data.options (the spec's `{prompt, options: {width, height}}`), 512x512 by default. Children
of a video-generation plan (data.sceneIndex) draw the `visual` of their upstream script scene.
"""

from __future__ import annotations

import colorsys
import random
import textwrap

from PIL import Image, ImageDraw, ImageFont

from vq.handlers._common import UNLINKED, dimensions, scene_index, script_scene, seed, text_field

DEFAULT_SIZE = (512, 512)


def _prompt(ctx, data: dict) -> tuple[str, dict]:
    """The prompt to draw and, for a scene of a plan, the scene fields to pass on."""
    index = scene_index(data)
    found = script_scene(ctx, index) if index is not None else None
    if found:
        script, scene = found
        prompt = scene.get("visual") or scene.get("narration") or script.get("title")
        if prompt:
            return str(prompt), {"sceneIndex": index, "heading": scene.get("heading"), "title": script.get("title")}
    return text_field(data, "prompt"), ({"sceneIndex": index} if index is not None else {})


def _colour(rng: random.Random, hue: float | None = None, light: float = 0.5) -> tuple[int, int, int]:
    hue = rng.random() if hue is None else hue % 1.0
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.45 + 0.4 * rng.random())
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw(prompt: str, width: int, height: int, progress=lambda p, m: None) -> Image.Image:
    rng = random.Random(seed(prompt))
    hue = rng.random()
    top, bottom = _colour(rng, hue, 0.3), _colour(rng, hue + 0.12 + 0.2 * rng.random(), 0.6)
    mask = Image.linear_gradient("L").resize((width, height))
    img = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    ).convert("RGBA")

    progress(30, "background painted")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(layer)
    for _ in range(4 + rng.randrange(5)):
        cx, cy = rng.random() * width, rng.random() * height
        r = (0.08 + 0.25 * rng.random()) * min(width, height)
        fill = _colour(rng, hue + rng.choice([0.33, 0.5, 0.66]), 0.4 + 0.4 * rng.random()) + (90,)
        box = (cx - r, cy - r, cx + r, cy + r)
        (pen.ellipse if rng.random() < 0.6 else pen.rectangle)(box, fill=fill)
    img = Image.alpha_composite(img, layer)

    progress(55, "shapes placed")
    size = max(8, min(width, height) // 14)
    font = _font(size)
    chars = max(8, int(width * 0.9 / (size * 0.55)))
    lines = textwrap.wrap(prompt, chars)[: max(1, int(height * 0.8 // (size * 1.3)))]
    text = "\n".join(lines)
    pen = ImageDraw.Draw(img)
    box = pen.multiline_textbbox((0, 0), text, font=font, spacing=size // 4)
    x, y = (width - (box[2] - box[0])) / 2, (height - (box[3] - box[1])) / 2
    shade = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(shade).rectangle(
        [x - size / 2, y - size / 2, x + box[2] + size / 2, y + box[3] + size / 2], fill=(0, 0, 0, 110)
    )
    img = Image.alpha_composite(img, shade)
    ImageDraw.Draw(img).multiline_text(
        (x, y), text, font=font, fill=(255, 255, 255, 255), spacing=size // 4, align="center"
    )
    return img.convert("RGB")


def check(data: dict) -> None:
    """At submit, for a job with no dependencies (vq/submission/validation.py)."""
    dimensions(data, DEFAULT_SIZE)
    _prompt(UNLINKED, data)


def handle(ctx, data: dict) -> dict:
    width, height = dimensions(data, DEFAULT_SIZE)
    prompt, scene = _prompt(ctx, data)
    ctx.progress(10, f"drawing {width}x{height}")
    ctx.log.info("image %dx%d for %r", width, height, prompt[:80])
    img = draw(prompt, width, height, ctx.progress)
    ctx.progress(80, "encoding PNG")
    path = ctx.artifacts_dir / "image.png"
    img.save(path, format="PNG")
    ctx.progress(100, "image ready")
    return {
        "path": str(path),
        "width": width,
        "height": height,
        "bytes": path.stat().st_size,
        "prompt": prompt,
        **scene,
        "artifacts": [str(path)],
    }
