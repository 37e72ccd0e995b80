"""audio-synthesis: the narration as a WAV file.

Speaks with espeak-ng when it is on PATH. Without it (or with data.engine "tone") it writes a
stand-in track: one soft beep per word, pitched by the word, paced so the file lasts as long
as saying the narration would (~2.5 words/s, at least 1 s), 16 kHz mono 16-bit. Either way
the duration reported is read back from the WAV header, so scenes are timed by the real file.
The text is data.text or data.narration, or for a scene of a video-generation plan
(data.sceneIndex) the narration of the upstream script scene.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import wave
from array import array

from vq.errors import PermanentError
from vq.handlers._common import (
    UNLINKED,
    int_field,
    scene_index,
    script_scene,
    seed,
    speech_seconds,
    text_field,
    wav_seconds,
    words,
)
from vq.procutil import tool_dies_with_caller

SAMPLE_RATE = 16_000
MAX_WORDS = 2_000
ENGINES = ("auto", "espeak-ng", "tone")
_PITCHES = [220.0 * 2 ** (k / 12) for k in (0, 2, 4, 7, 9, 12, 14, 16, 19, 21)]  # pentatonic


def _text(ctx, data: dict) -> tuple[str, dict]:
    index = scene_index(data)
    found = script_scene(ctx, index) if index is not None else None
    scene = {}
    if found:
        script, sc = found
        scene = {"sceneIndex": index, "heading": sc.get("heading"), "title": script.get("title")}
    text = text_field(data, "text", "narration", required=False) or (found and found[1].get("narration"))
    if not text:
        raise PermanentError("text: required (or narration, or a sceneIndex with an upstream script)")
    return str(text).strip(), scene


def _beep(freq: float, frames: int) -> bytes:
    samples = array(
        "h",
        (
            int(9000 * math.sin(math.pi * i / frames) * math.sin(2 * math.pi * freq * i / SAMPLE_RATE))
            for i in range(frames)
        ),
    )
    return samples.tobytes()


def write_tone(path, text: str) -> None:
    """A beep per word over speech_seconds(text): the pace of the narration, without a voice."""
    tokens = words(text) or ["."]
    total = int(round(speech_seconds(text) * SAMPLE_RATE))
    slot = total // len(tokens)
    beep_frames = min(int(0.25 * SAMPLE_RATE), int(slot * 0.6))
    beeps = {p: _beep(p, beep_frames) for p in _PITCHES}
    gap = bytes(2 * (slot - beep_frames))
    body = b"".join(beeps[_PITCHES[seed(t.lower()) % len(_PITCHES)]] + gap for t in tokens)
    body += bytes(2 * total - len(body))  # pad the rounding remainder with silence
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(body)


def speak(path, text: str, voice: str | None, speed: int) -> None:
    cmd = ["espeak-ng", "-w", str(path), "-s", str(speed), "--stdin"] + (["-v", voice] if voice else [])
    subprocess.run(
        cmd, input=text.encode(), check=True, capture_output=True, timeout=120, preexec_fn=tool_dies_with_caller()
    )


def _voice(data: dict) -> tuple[str, str | None, int]:
    """(engine, voice, speed) as asked for."""
    engine = data.get("engine") or "auto"
    if engine not in ENGINES:
        raise PermanentError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    voice = text_field(data, "voice", required=False) or None
    if voice and not all(c.isalnum() or c in "+-_" for c in voice):
        raise PermanentError(f"voice: not a voice name: {voice!r}")
    return engine, voice, int_field(data, "speed", 150, 80, 450)  # espeak-ng words per minute


def _word_count(text: str) -> int:
    count = len(words(text))
    if count > MAX_WORDS:
        raise PermanentError(f"text: too long for one narration ({count} words, at most {MAX_WORDS})")
    return count


def check(data: dict) -> None:
    """At submit, for a job with no dependencies (vq/submission/validation.py)."""
    _voice(data)
    _word_count(_text(UNLINKED, data)[0])


def handle(ctx, data: dict) -> dict:
    text, scene = _text(ctx, data)
    engine, voice, speed = _voice(data)
    count = _word_count(text)
    have_espeak = shutil.which("espeak-ng") is not None
    if engine == "espeak-ng" and not have_espeak:
        raise PermanentError("engine: espeak-ng was asked for but is not installed on this worker")
    ctx.progress(10, f"{count} word{'' if count == 1 else 's'} to narrate")

    path = ctx.artifacts_dir / "narration.wav"
    used = "tone"
    if engine != "tone" and have_espeak:
        ctx.progress(20, "speaking with espeak-ng")
        try:
            speak(path, text, voice, speed)
            used = "espeak-ng"
        except (subprocess.SubprocessError, OSError) as exc:
            ctx.log.warning("espeak-ng failed (%s); writing a tone track instead", exc)
    if used == "tone":
        ctx.progress(30, "writing a tone track")
        write_tone(path, text)
    ctx.progress(90, "reading the WAV back")
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
    duration = wav_seconds(path)
    ctx.log.info("narration %.2fs via %s", duration, used)
    ctx.progress(100, "audio ready")
    return {
        "path": str(path),
        "durationSeconds": duration,
        "engine": used,
        "sampleRate": rate,
        "words": count,
        "text": text,
        **scene,
        "artifacts": [str(path)],
    }
