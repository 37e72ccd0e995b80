"""video-composition: scenes joined into one video, or into an edit decision list without ffmpeg.

Scenes come from the upstream steps scene-* of a video-generation plan (in index order) or
from data.scenes ([{image, audio, durationSeconds}]). Each is a still shown while its
narration plays, one after the other. With ffmpeg on PATH every scene becomes a small
segment (ultrafast, stillimage) and the segments are concatenated into video.mp4. Without
it, or with data.format "edl", the same timeline is written as timeline.edl.json plus a
CMX3600-style timeline.edl that an editor or a later render can pick up.

Rendering checkpoints per scene (ctx.checkpoint, vq/checkpoints.py): each segment is kept in
the job's artifacts (segments/segment-NNN.mp4) and recorded once written, so an attempt that
follows a crash, a retry or a requeue at shutdown renders only the scenes not yet done
(`resumedScenes` in the result). Writing an EDL is one quick step, with nothing to resume.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from vq.errors import PermanentError
from vq.handlers._common import UNLINKED, wav_seconds, write_json
from vq.procutil import tool_dies_with_caller

FPS = 25  # timecode rate of the EDL
RENDER = (480, 270, 10)  # width, height, frames per second of the mp4: small and quick
FORMATS = ("auto", "mp4", "edl")


def _step_number(step: str) -> int:
    tail = step.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _given(ctx, data: dict) -> tuple[list, list[str], bool]:
    """(the scenes, each one's name for errors, whether they came from upstream steps),
    each scene checked for its shape."""
    ups = sorted(
        ((s, u) for s, u in ctx.upstream_by_step().items() if s.startswith("scene-")),
        key=lambda su: _step_number(su[0]),
    )
    given: list[object]
    if ups:
        missing = [s for s, u in ups if not u.result]
        if missing:
            raise PermanentError(f"{', '.join(missing)}: upstream scene has no result")
        given, labels = [u.result for _, u in ups], [s for s, _ in ups]
    else:
        listed = data.get("scenes")
        if not isinstance(listed, list) or not listed:
            raise PermanentError("scenes: required, a non-empty list of {image, audio, durationSeconds}")
        given, labels = listed, [f"scenes[{i}]" for i in range(len(listed))]
    for sc, field in zip(given, labels, strict=True):
        if not isinstance(sc, dict) or not isinstance(sc.get("image"), str):
            raise PermanentError(f"{field}.image: required, the path of the scene's image")
        if not _duration(sc) and not sc.get("audio"):
            raise PermanentError(f"{field}.durationSeconds: required when the scene has no audio")
    return given, labels, bool(ups)


def _duration(scene: dict) -> float | None:
    duration = scene.get("durationSeconds")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
        return None
    return float(duration)


def _format(data: dict) -> str:
    fmt = data.get("format") or "auto"
    if fmt not in FORMATS:
        raise PermanentError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def check(data: dict) -> None:
    """At submit, for a job with no dependencies (vq/submission/validation.py): the scenes'
    shape (whether their files exist, and ffmpeg for mp4, is seen where the job runs)."""
    _format(data)
    _given(UNLINKED, data)


def _scenes(ctx, data: dict) -> list[dict]:
    given, labels, ups = _given(ctx, data)
    scenes = []
    for i, (sc, field) in enumerate(zip(given, labels, strict=True)):
        image = ctx.input_file(sc["image"], f"{field}.image")
        audio = sc.get("audio")
        if audio:
            audio = ctx.input_file(audio, f"{field}.audio")
        duration = _duration(sc) or wav_seconds(audio)
        scenes.append(
            {
                "index": sc.get("index", i),
                "heading": sc.get("heading") or f"Scene {i + 1}",
                "image": str(image),
                "audio": str(audio) if audio else None,
                "durationSeconds": float(duration),
                "title": sc.get("title"),
            }
        )
    return sorted(scenes, key=lambda s: s["index"]) if ups else scenes


def timeline(scenes: list[dict]) -> list[dict]:
    out, t = [], 0.0
    for sc in scenes:
        start, t = t, t + sc["durationSeconds"]
        out.append(
            {
                "index": sc["index"],
                "heading": sc["heading"],
                "start": round(start, 3),
                "end": round(t, 3),
                "durationSeconds": round(sc["durationSeconds"], 3),
                "image": sc["image"],
                "audio": sc["audio"],
            }
        )
    return out


def _frames(seconds: float) -> int:
    return int(seconds * FPS + 0.5)


def _tc(frames: int) -> str:
    return f"{frames // (3600 * FPS):02d}:{frames // (60 * FPS) % 60:02d}:{frames // FPS % 60:02d}:{frames % FPS:02d}"


def write_edl(ctx, title: str, events: list[dict]) -> list[Path]:
    total = events[-1]["end"]
    json_path = write_json(
        ctx, "timeline.edl.json", {"title": title, "fps": FPS, "durationSeconds": total, "events": events}
    )
    lines, n = [f"TITLE: {title}", "FCM: NON-DROP FRAME", ""], 0
    for ev in events:
        for track, src in (("V", ev["image"]), ("A", ev["audio"])):
            if not src:
                continue
            n += 1
            start, end = _frames(ev["start"]), _frames(ev["end"])
            lines += [
                f"{n:03d}  AX       {track:<5} C        {_tc(0)} {_tc(end - start)} {_tc(start)} {_tc(end)}",
                f"* FROM CLIP NAME: {Path(src).name}",
                f"* SOURCE FILE: {src}",
                "",
            ]
    text_path = ctx.artifacts_dir / "timeline.edl"
    text_path.write_text("\n".join(lines), encoding="utf-8")
    return [json_path, text_path]


def render_mp4(ctx, events: list[dict]) -> tuple[Path, dict]:
    """video.mp4 from the events: one segment per scene (those an earlier attempt recorded
    are reused), then a stream-copy concat. Returns the video and what was rendered and
    resumed: {renderedScenes, resumedScenes, segments}."""
    work = ctx.artifacts_dir / "segments"
    work.mkdir(exist_ok=True)
    # The segments are kept: a later attempt of this job reuses them (and an editor may).
    done = _render_segments(ctx, events, work)
    out = ctx.artifacts_dir / "video.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(work / "list.txt"),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        preexec_fn=tool_dies_with_caller(),
    )
    return out, done


def _scene_key(ev: dict) -> str:
    """What a segment was rendered from: a recorded segment is reused only for the same scene."""
    source = json.dumps([ev["image"], ev["audio"], round(ev["durationSeconds"], 3)])
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _recorded_segments(ctx, events: list[dict], work: Path) -> dict[int, dict]:
    """The segments an earlier attempt of this job rendered and recorded (ctx.resumed_from),
    by position, that are still there and were made from the same scene."""
    state = ctx.resumed_from if isinstance(ctx.resumed_from, dict) else {}
    found = {}
    for item in state.get("segments") or []:
        if not isinstance(item, dict):
            continue
        i = item.get("position")
        if not isinstance(i, int) or not 0 <= i < len(events) or item.get("scene") != _scene_key(events[i]):
            continue
        if (work / f"segment-{i:03d}.mp4").is_file():
            found[i] = item
    return found


def _render_segments(ctx, events: list[dict], work: Path) -> dict:
    w, h, fps = RENDER
    listing = []
    recorded = _recorded_segments(ctx, events, work)
    rendered, resumed = [], []
    for i, ev in enumerate(events):
        seg = work / f"segment-{i:03d}.mp4"
        quoted = str(seg).replace("'", "'\\''")
        if i in recorded:
            resumed.append(ev["index"])
            listing.append(f"file '{quoted}'")
            ctx.log.info("scene %d: rendered by an earlier attempt, reused", ev["index"])
            ctx.progress(20 + 65 * (i + 1) / len(events), f"scene {i + 1}/{len(events)} already rendered")
            continue
        sound = ["-i", ev["audio"]] if ev["audio"] else ["-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono"]
        cmd = [
            "ffmpeg",
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-loop",
            "1",
            "-framerate",
            str(fps),
            "-i",
            ev["image"],
            *sound,
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-t",
            f"{ev['durationSeconds']:.3f}",
            "-vf",
            f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,"
            "setsar=1,format=yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "stillimage",
            "-r",
            str(fps),
            "-af",
            "apad",
            "-c:a",
            "aac",
            "-ar",
            "22050",
            "-ac",
            "1",
            str(seg),
        ]
        subprocess.run(
            cmd,
            check=True,
            capture_output=True,
            timeout=60 + 5 * ev["durationSeconds"],
            preexec_fn=tool_dies_with_caller(),  # not rendering on after a killed worker
        )
        listing.append(f"file '{quoted}'")
        rendered.append(ev["index"])
        recorded[i] = {"position": i, "index": ev["index"], "scene": _scene_key(ev), "file": f"segments/{seg.name}"}
        ctx.log.info("scene %d rendered", ev["index"])
        ctx.checkpoint({"segments": [recorded[k] for k in sorted(recorded)]})  # a later attempt skips it
        ctx.progress(20 + 65 * (i + 1) / len(events), f"rendered scene {i + 1}/{len(events)}")
    (work / "list.txt").write_text("\n".join(listing) + "\n")
    return {
        "renderedScenes": rendered,
        "resumedScenes": resumed,
        "segments": [str(work / f"segment-{i:03d}.mp4") for i in range(len(events))],
    }


def probe_seconds(path: Path) -> float | None:
    """The container duration ffmpeg reports for a file, or None when it cannot say."""
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=tool_dies_with_caller(),
    )
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr)
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


def handle(ctx, data: dict) -> dict:
    fmt = _format(data)
    have_ffmpeg = shutil.which("ffmpeg") is not None
    if fmt == "mp4" and not have_ffmpeg:
        raise PermanentError("format: mp4 needs ffmpeg, which is not installed on this worker (use edl)")
    scenes = _scenes(ctx, data)
    title = data.get("title") or next((s["title"] for s in scenes if s["title"]), None) or "Untitled"
    events = timeline(scenes)
    total = events[-1]["end"]
    ctx.progress(15, f"{len(events)} scenes, {total:.2f}s")

    result = {"format": "edl", "durationSeconds": total, "scenes": len(events), "title": title, "timeline": events}
    if fmt != "edl" and have_ffmpeg:
        try:
            out, done = render_mp4(ctx, events)
            result.update(format="mp4", path=str(out), artifacts=[str(out)], renderedSeconds=probe_seconds(out), **done)
        except (subprocess.SubprocessError, OSError) as exc:
            err = (getattr(exc, "stderr", None) or b"")[-300:]
            ctx.log.warning("ffmpeg failed (%s: %r); writing an edit decision list instead", exc, err)
            result["warning"] = f"ffmpeg failed, wrote an edit decision list instead: {exc}"
    if result["format"] == "edl":
        paths = write_edl(ctx, title, events)
        ctx.progress(90, "edit decision list written")
        result.update(path=str(paths[0]), artifacts=[str(p) for p in paths])
    ctx.log.info("composed %d scenes, %.2fs, as %s", len(events), total, result["format"])
    ctx.progress(100, "composition ready")
    return result
