"""scene-creation: one scene from an image and its narration audio, described in scene.json.

A scene is what video-composition lays on its timeline: a still shown for as long as its
narration plays. In a video-generation plan, scene-{i} reads the results of its upstream
steps image-{i} and audio-{i}; standalone, it takes data.imagePath and data.audioPath. Both
files are checked here (the image opens, the WAV has a header) and the duration is read from
the WAV, so a broken asset fails this step, not the composition.
"""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from vq.errors import PermanentError
from vq.handlers._common import UNLINKED, int_field, scene_index, text_field, wav_seconds, write_json


def _inputs(ctx, data: dict) -> tuple[int, dict, dict, str, str]:
    """(index, image result, audio result, image field name, audio field name)."""
    index = scene_index(data)
    steps = ctx.upstream_by_step()
    if index is not None and not data.get("imagePath") and not data.get("audioPath"):
        found = {}
        for kind in ("image", "audio"):
            up = steps.get(f"{kind}-{index}")
            if up is None or not (up.result or {}).get("path"):
                raise PermanentError(
                    f"{kind}-{index}: no upstream result with a path for scene {index} (or give {kind}Path)"
                )
            found[kind] = up.result
        return index, found["image"], found["audio"], f"image-{index}.path", f"audio-{index}.path"
    image = text_field(data, "imagePath")
    audio = text_field(data, "audioPath")
    index = index if index is not None else int_field(data, "index", 0, 0, 999)
    return index, {"path": image}, {"path": audio}, "imagePath", "audioPath"


def check(data: dict) -> None:
    """At submit, for a job with no dependencies (vq/submission/validation.py): the paths
    are given (whether the files exist is seen where the job runs)."""
    _inputs(UNLINKED, data)


def handle(ctx, data: dict) -> dict:
    index, image, audio, image_field, audio_field = _inputs(ctx, data)
    ctx.progress(10, f"scene {index}: checking assets")

    image_path = ctx.input_file(image["path"], image_field)
    audio_path = ctx.input_file(audio["path"], audio_field)
    try:
        with Image.open(image_path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"{image_field}: not a readable image: {image_path} ({exc})") from None
    ctx.progress(40, f"image {width}x{height} ok")
    duration = wav_seconds(audio_path)
    ctx.progress(70, f"narration {duration:.2f}s")

    scene = {
        "index": index,
        "heading": text_field(data, "heading", required=False)
        or audio.get("heading")
        or image.get("heading")
        or f"Scene {index + 1}",
        "image": str(image_path),
        "audio": str(audio_path),
        "durationSeconds": duration,
        "narration": text_field(data, "narration", required=False) or audio.get("text") or "",
        "width": width,
        "height": height,
    }
    title = audio.get("title") or image.get("title")
    if title:
        scene["title"] = title
    path = write_json(ctx, "scene.json", scene)
    ctx.log.info("scene %d %r: %.2fs", index, scene["heading"], duration)
    ctx.progress(100, "scene ready")
    return {**scene, "path": str(path), "artifacts": [str(path)]}
