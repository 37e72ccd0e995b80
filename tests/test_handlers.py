"""The built-in handlers, called directly through local_context: no Redis, no worker.

Each test checks what a user would notice: the PNG has the asked size, the WAV lasts as long
as its narration, the analysis counts a known text right, bad input names the bad field, and
a whole video plan run by hand in plan order composes to the sum of its scenes.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import shutil
import wave

import pytest
from PIL import Image

from vq.context import Upstream, local_context
from vq.errors import HandlerError, PermanentError
from vq.handlers import (
    ai_processing,
    audio_synthesis,
    content_analysis,
    image_generation,
    personalization,
    scene_creation,
    script_generation,
    video_composition,
    video_generation,
    world_building,
)

HAS_FFMPEG = shutil.which("ffmpeg") is not None


def run(module, tmp_path, data, upstream=None, job_id="job-1"):
    ctx, reports = local_context(
        job_id, module.__name__.rsplit(".", 1)[-1].replace("_", "-"), tmp_path, upstream=upstream
    )
    result = module.handle(ctx, data)
    json.dumps(result)  # results are stored as JSON
    return result, reports


def script_upstream(tmp_path, prompt="Rivers carve canyons over millions of years. Rain feeds them.", n=2):
    result, _ = run(script_generation, tmp_path, {"prompt": prompt, "sceneCount": n}, job_id="script-job")
    return Upstream(id="script-job", job_type="script-generation", step="script", result=result)


def wav_info(path):
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate(), w.getframerate(), w.getnchannels(), w.getsampwidth()


# --- every handler -------------------------------------------------------------------------

VALID = [
    (script_generation, {"prompt": "Create a video about AI technology"}),
    (image_generation, {"prompt": "a sunset", "width": 64, "height": 48}),
    (audio_synthesis, {"text": "Hello there, world.", "engine": "tone"}),
    (world_building, {"prompt": "A dragon guards the last kingdom"}),
    (content_analysis, {"content": "Analyze this content", "type": "text"}),
    (personalization, {"content": "Hello. I do not know.", "preferences": {"tone": "casual", "name": "Ana"}}),
    (ai_processing, {"task": "summarize", "input": "One idea. Another idea. A third idea."}),
    (video_composition, None),  # needs files: covered below
]


@pytest.mark.parametrize(
    "module,data", [v for v in VALID if v[1] is not None], ids=lambda v: getattr(v, "__name__", "")
)
def test_progress_increases_and_ends_at_100(tmp_path, module, data):
    _, reports = run(module, tmp_path, data)
    percents = [p for p, _ in reports]
    assert len(percents) >= 3
    assert percents == sorted(percents) and len(set(percents)) == len(percents)
    assert percents[-1] == 100


def test_every_builtin_type_resolves_to_a_handler():
    from vq.jobtypes import BUILTIN_TYPES, _builtin_handler, load_handler

    for name in BUILTIN_TYPES:
        assert callable(load_handler(_builtin_handler(name)))
    assert callable(video_generation.plan)


# --- script-generation ---------------------------------------------------------------------


def test_script_spreads_prompt_sentences_and_times_scenes(tmp_path):
    prompt = "The ocean covers most of Earth. Whales sing across basins. Reefs are dying. People restore them."
    result, _ = run(script_generation, tmp_path, {"prompt": prompt, "sceneCount": 2, "style": "documentary"})
    assert result["style"] == "documentary" and len(result["scenes"]) == 2
    assert " ".join(s["narration"] for s in result["scenes"]) == prompt
    for i, scene in enumerate(result["scenes"]):
        assert scene["index"] == i and scene["heading"] and scene["visual"]
        assert scene["durationSeconds"] == pytest.approx(max(1, len(scene["narration"].split()) / 2.5), abs=0.01)
    saved = json.loads((tmp_path / "job-1" / "script.json").read_text())
    assert saved["scenes"] == result["scenes"]
    again, _ = run(script_generation, tmp_path, {"prompt": prompt, "sceneCount": 2, "style": "documentary"})
    assert again["scenes"] == result["scenes"]  # deterministic


def test_script_scene_count_defaults_and_follows_given_scenes(tmp_path):
    assert len(run(script_generation, tmp_path, {"prompt": "Bees"})[0]["scenes"]) == 3
    given = ["First we see the hive.", {"heading": "Flowers", "narration": "Then the flowers."}]
    scenes = run(script_generation, tmp_path, {"prompt": "Bees", "scenes": given})[0]["scenes"]
    assert [s["narration"] for s in scenes] == ["First we see the hive.", "Then the flowers."]
    assert scenes[1]["heading"] == "Flowers"


@pytest.mark.parametrize(
    "data,field",
    [
        ({}, "prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "x", "sceneCount": 0}, "sceneCount"),
        ({"prompt": "x", "sceneCount": 21}, "sceneCount"),
        ({"prompt": "x", "scenes": "three"}, "scenes"),
    ],
)
def test_script_rejects_bad_input(tmp_path, data, field):
    with pytest.raises(PermanentError, match=field):
        run(script_generation, tmp_path, data)


# --- image-generation ----------------------------------------------------------------------


def test_image_png_has_requested_size_from_options(tmp_path):
    result, _ = run(
        image_generation,
        tmp_path,
        {"prompt": "Generate an image of a sunset", "options": {"width": 320, "height": 200}},
    )
    with Image.open(result["path"]) as img:
        assert img.format == "PNG" and img.size == (320, 200)
    assert (result["width"], result["height"]) == (320, 200)
    assert result["bytes"] == (tmp_path / "job-1" / "image.png").stat().st_size
    assert result["artifacts"] == [result["path"]]


def test_image_is_deterministic_per_prompt_and_defaults_to_512(tmp_path):
    a = run(image_generation, tmp_path, {"prompt": "sunset"}, job_id="a")[0]
    b = run(image_generation, tmp_path, {"prompt": "sunset"}, job_id="b")[0]
    c = run(image_generation, tmp_path, {"prompt": "forest"}, job_id="c")[0]
    pixels = {k: Image.open(r["path"]).tobytes() for k, r in (("a", a), ("b", b), ("c", c))}
    assert Image.open(a["path"]).size == (512, 512)
    assert pixels["a"] == pixels["b"] != pixels["c"]


@pytest.mark.parametrize("width", [0, -5, 4097, "wide", 12.5, True])
def test_image_rejects_bad_width(tmp_path, width):
    with pytest.raises(PermanentError, match="width"):
        run(image_generation, tmp_path, {"prompt": "x", "width": width})


def test_image_of_a_planned_scene_draws_the_script_visual(tmp_path):
    script = script_upstream(tmp_path)
    result, _ = run(image_generation, tmp_path, {"sceneIndex": 1, "width": 64, "height": 36}, upstream=[script])
    assert result["prompt"] == script.result["scenes"][1]["visual"]
    assert result["sceneIndex"] == 1 and result["title"] == script.result["title"]
    with pytest.raises(PermanentError, match="sceneIndex"):
        run(image_generation, tmp_path, {"sceneIndex": 5}, upstream=[script])


# --- audio-synthesis -----------------------------------------------------------------------


def test_tone_wav_lasts_as_long_as_the_narration(tmp_path):
    text = " ".join(["word"] * 25)  # 25 words at 2.5 words/s
    result, _ = run(audio_synthesis, tmp_path, {"text": text, "engine": "tone"})
    seconds, rate, channels, width = wav_info(result["path"])
    assert (rate, channels, width) == (16000, 1, 2)
    assert seconds == pytest.approx(10.0, abs=0.05) == result["durationSeconds"]
    assert result["engine"] == "tone" and result["sampleRate"] == 16000
    short, _ = run(audio_synthesis, tmp_path, {"narration": "Hi", "engine": "tone"}, job_id="short")
    assert short["durationSeconds"] == pytest.approx(1.0, abs=0.01)


def test_audio_uses_espeak_when_installed_and_reports_the_real_duration(tmp_path):
    result, _ = run(audio_synthesis, tmp_path, {"text": "A short narration for the test."})
    assert result["engine"] == ("espeak-ng" if shutil.which("espeak-ng") else "tone")
    assert result["durationSeconds"] == pytest.approx(wav_info(result["path"])[0], abs=0.001)


def test_audio_takes_the_script_narration_and_rejects_missing_text(tmp_path):
    script = script_upstream(tmp_path)
    result, _ = run(audio_synthesis, tmp_path, {"sceneIndex": 0, "engine": "tone"}, upstream=[script])
    assert result["text"] == script.result["scenes"][0]["narration"]
    with pytest.raises(PermanentError, match="text"):
        run(audio_synthesis, tmp_path, {})
    with pytest.raises(PermanentError, match="engine"):
        run(audio_synthesis, tmp_path, {"text": "x", "engine": "elevenlabs"})


# --- scene-creation ------------------------------------------------------------------------


def test_scene_from_standalone_files_times_itself_by_the_wav(tmp_path):
    image = run(image_generation, tmp_path, {"prompt": "x", "width": 40, "height": 30}, job_id="img")[0]
    audio = run(audio_synthesis, tmp_path, {"text": "one two three four five", "engine": "tone"}, job_id="aud")[0]
    result, _ = run(
        scene_creation,
        tmp_path,
        {
            "imagePath": image["path"],
            "audioPath": audio["path"],
            "heading": "Intro",
            "narration": "one two three four five",
        },
    )
    assert result["durationSeconds"] == pytest.approx(2.0, abs=0.01)
    assert (result["heading"], result["width"], result["height"]) == ("Intro", 40, 30)
    saved = json.loads((tmp_path / "job-1" / "scene.json").read_text())
    assert saved["image"] == image["path"] and saved["audio"] == audio["path"]
    with pytest.raises(PermanentError, match="audioPath"):
        run(scene_creation, tmp_path, {"imagePath": image["path"], "audioPath": str(tmp_path / "nope.wav")})
    with pytest.raises(PermanentError, match="imagePath"):
        run(scene_creation, tmp_path, {"audioPath": audio["path"]})
    with pytest.raises(PermanentError, match="image-0"):
        run(scene_creation, tmp_path, {"sceneIndex": 0})


# --- world-building, content-analysis, personalization, ai-processing ----------------------


def test_world_is_deterministic_with_hex_palette_and_guessed_genre(tmp_path):
    data = {"prompt": "A starship crew finds an alien signal near a dying planet"}
    a, b = run(world_building, tmp_path, data)[0], run(world_building, tmp_path, data)[0]
    assert {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}
    assert a["genre"] == "sci-fi" and "starship" in a["themes"]
    assert len(a["palette"]) == 5 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in a["palette"])
    assert len(a["locations"]) == 4 and len(a["characters"]) == 3
    assert run(world_building, tmp_path, {"genre": "noir"})[0]["genre"] == "noir"
    with pytest.raises(PermanentError, match="prompt"):
        run(world_building, tmp_path, {})


def test_content_analysis_counts_a_known_text(tmp_path):
    text = "The cat sat on the mat. The cat was happy! Was the dog happy? No."
    result, _ = run(content_analysis, tmp_path, {"content": text})
    assert result["wordCount"] == 15 and result["sentenceCount"] == 4 and result["uniqueWords"] == 9
    assert result["averageSentenceLength"] == 3.75
    assert result["readingTimeSeconds"] == 4.5  # 15 words at 200 per minute
    assert result["keywords"][:2] == [{"word": "cat", "count": 2}, {"word": "happy", "count": 2}]
    assert {k["word"] for k in result["keywords"]} == {"cat", "happy", "sat", "mat", "dog"}
    assert result["language"]["code"] == "en"


def test_content_analysis_of_a_script_and_of_nothing(tmp_path):
    script = {"scenes": [{"narration": "Hello world."}, {"narration": "Goodbye cruel world."}]}
    result, _ = run(content_analysis, tmp_path, {"content": json.dumps(script), "type": "script"})
    assert result["wordCount"] == 5 and [s["wordCount"] for s in result["scenes"]] == [2, 3]
    for bad in ({"content": ""}, {"content": "  ...  "}, {}):
        with pytest.raises(PermanentError, match="content"):
            run(content_analysis, tmp_path, bad)
    with pytest.raises(PermanentError, match="type"):
        run(content_analysis, tmp_path, {"content": "x", "type": "video"})


def test_personalization_applies_tone_length_and_greeting(tmp_path):
    content = "Hello. We do not ship on Sundays; however, you can purchase online. " * 6
    prefs = {"tone": "casual", "length": "short", "name": "Ana"}
    result, _ = run(personalization, tmp_path, {"content": content, "preferences": prefs})
    out = result["content"]
    assert out.startswith("Hi Ana, Hey.") and "don't" in out and "do not" not in out and "buy" in out
    assert len(out.split()) <= 40 + 2
    assert any(c.startswith("length short") for c in result["changes"])
    assert any("greeting" in c for c in result["changes"])
    formal, _ = run(
        personalization,
        tmp_path,
        {"content": {"body": "I'm gonna buy it."}, "preferences": {"tone": "formal", "name": "Lee"}},
    )
    assert formal["content"]["body"] == "Dear Lee, I am going to purchase it."
    calm, _ = run(
        personalization, tmp_path, {"content": "I'm gonna go.", "preferences": {"tone": "formal", "intensity": 0}}
    )
    assert calm["content"] == "I'm gonna go." and calm["changes"] == []
    with pytest.raises(PermanentError, match="preferences.tone"):
        run(personalization, tmp_path, {"content": "x", "preferences": {"tone": "angry"}})


def test_ai_processing_local_tasks_and_unknown_provider(tmp_path):
    text = (
        "Solar power is getting cheaper. Cats sleep a lot. Solar panels turn sunlight into power. The weather was fine."
    )
    summary = run(ai_processing, tmp_path, {"task": "summarize", "input": text})[0]["output"]["summary"]
    assert summary == "Solar power is getting cheaper. Solar panels turn sunlight into power."
    label = run(ai_processing, tmp_path, {"task": "classify", "input": text})[0]["output"]["label"]
    assert label == "environment"
    words = run(ai_processing, tmp_path, {"task": "extract-keywords", "input": text, "options": {"limit": 2}})[0]
    assert words["output"]["keywords"] == [{"word": "solar", "count": 2}, {"word": "power", "count": 2}]
    assert run(ai_processing, tmp_path, {"task": "echo", "input": {"a": 1}})[0]["output"] == {"echo": {"a": 1}}
    with pytest.raises(PermanentError, match=r"provider: no providers are configured"):
        run(ai_processing, tmp_path, {"provider": "openai", "task": "echo", "input": "x"})
    with pytest.raises(PermanentError, match="task"):
        run(ai_processing, tmp_path, {"task": "translate", "input": "x"})


# --- video-composition ---------------------------------------------------------------------


def _scene_files(tmp_path, texts):
    scenes = []
    for i, text in enumerate(texts):
        img = run(image_generation, tmp_path, {"prompt": text, "width": 64, "height": 36}, job_id=f"i{i}")[0]
        aud = run(audio_synthesis, tmp_path, {"text": text, "engine": "tone"}, job_id=f"a{i}")[0]
        scenes.append({"image": img["path"], "audio": aud["path"]})
    return scenes


def test_composition_edl_lays_scenes_end_to_end(tmp_path):
    scenes = _scene_files(tmp_path, ["one two three four five", "six seven"])
    scenes[1]["durationSeconds"] = 3.6  # an explicit duration wins over the WAV's
    result, _ = run(video_composition, tmp_path, {"scenes": scenes, "format": "edl"})
    assert result["format"] == "edl" and result["scenes"] == 2
    assert [(e["start"], e["end"]) for e in result["timeline"]] == [(0.0, 2.0), (2.0, 5.6)]
    assert result["durationSeconds"] == 5.6
    edl = (tmp_path / "job-1" / "timeline.edl").read_text()
    assert "00:00:03:15 00:00:02:00 00:00:05:15" in edl and edl.count("FROM CLIP NAME") == 4
    assert json.loads((tmp_path / "job-1" / "timeline.edl.json").read_text())["durationSeconds"] == 5.6
    with pytest.raises(PermanentError, match="scenes"):
        run(video_composition, tmp_path, {"scenes": []})
    with pytest.raises(PermanentError, match=r"scenes\[0\].image"):
        run(video_composition, tmp_path, {"scenes": [{"image": str(tmp_path / "missing.png"), "durationSeconds": 2}]})
    with pytest.raises(PermanentError, match=r"scenes\[0\].durationSeconds: required when the scene has no audio"):
        run(video_composition, tmp_path, {"scenes": [{"image": str(tmp_path / "missing.png"), "audio": None}]})


def test_composition_falls_back_to_edl_without_ffmpeg(tmp_path, monkeypatch):
    scenes = _scene_files(tmp_path, ["one two three"])
    monkeypatch.setattr(video_composition.shutil, "which", lambda name: None)
    assert run(video_composition, tmp_path, {"scenes": scenes})[0]["format"] == "edl"
    with pytest.raises(PermanentError, match="ffmpeg"):
        run(video_composition, tmp_path, {"scenes": scenes, "format": "mp4"})


@pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg is not installed")
def test_composition_renders_mp4_with_ffmpeg(tmp_path):
    scenes = _scene_files(tmp_path, ["one two three four five", "six seven"])
    result, _ = run(video_composition, tmp_path, {"scenes": scenes, "format": "mp4"})
    assert result["format"] == "mp4" and result["path"].endswith(".mp4")
    assert result["renderedSeconds"] == pytest.approx(result["durationSeconds"], abs=0.3)


# --- video-generation: the plan and the whole pipeline ---------------------------------------


def test_plan_builds_the_step_graph(tmp_path):
    steps = video_generation.plan({"prompt": "AI", "options": {"sceneCount": 2}})
    names = [s["step"] for s in steps]
    assert names == ["script", "image-0", "audio-0", "scene-0", "image-1", "audio-1", "scene-1", "compose"]
    by = {s["step"]: s for s in steps}
    assert by["script"]["data"] == {"prompt": "AI", "sceneCount": 2, "style": "cinematic"}
    assert by["image-1"]["data"] == {"sceneIndex": 1, "width": 640, "height": 360}
    assert by["scene-1"]["dependsOn"] == ["image-1", "audio-1"]
    assert by["compose"]["dependsOn"] == ["scene-0", "scene-1"]
    assert all(set(s["dependsOn"]) <= set(names[:i]) for i, s in enumerate(steps))  # plan order is runnable
    assert len(video_generation.plan({"prompt": "AI", "scenes": [{}, {}, {}, {}]})) == 1 + 4 * 3 + 1
    for data, field in (
        ({}, "prompt"),
        ({"prompt": "AI", "sceneCount": 11}, "sceneCount"),
        ({"prompt": "AI", "width": 0}, "width"),
    ):
        with pytest.raises(PermanentError, match=field):
            video_generation.plan(data)


def test_whole_video_pipeline_by_hand_composes_the_sum_of_its_scenes(tmp_path):
    data = {"prompt": "Create a video about AI technology", "sceneCount": 2, "width": 96, "height": 54}
    done: dict[str, Upstream] = {}
    for step in video_generation.plan(data):
        module = importlib.import_module(f"vq.handlers.{step['jobType'].replace('-', '_')}")
        upstream = [done[d] for d in step["dependsOn"]]
        result, reports = run(module, tmp_path, step["data"], upstream=upstream, job_id=f"job-{step['step']}")
        assert reports[-1][0] == 100
        done[step["step"]] = Upstream(
            id=f"job-{step['step']}", job_type=step["jobType"], step=step["step"], result=result
        )
    scenes = [done[f"scene-{i}"].result for i in range(2)]
    compose = done["compose"].result
    assert compose["scenes"] == 2
    assert compose["durationSeconds"] == pytest.approx(sum(s["durationSeconds"] for s in scenes), abs=0.01)
    assert [s["durationSeconds"] for s in scenes] == [done[f"audio-{i}"].result["durationSeconds"] for i in range(2)]
    assert Image.open(done["image-0"].result["path"]).size == (96, 54)

    final, reports = run(video_generation, tmp_path, data, upstream=[done["compose"]], job_id="parent")
    assert final["video"] == compose["path"] and final["format"] == compose["format"]
    assert final["durationSeconds"] == compose["durationSeconds"] and final["scenes"] == 2
    assert final["title"] == done["script"].result["title"] == "AI technology"
    assert reports[-1][0] == 100


def test_video_generation_runs_its_plan_inline_when_it_has_no_upstream(tmp_path):
    result, reports = run(
        video_generation, tmp_path, {"prompt": "Bees and flowers", "sceneCount": 1, "width": 64, "height": 36}
    )
    assert result["scenes"] == 1 and result["durationSeconds"] > 0
    assert all(p.startswith(str(tmp_path / "job-1")) for p in result["artifacts"])
    percents = [p for p, _ in reports]
    assert percents == sorted(percents) and percents[-1] == 100
    orphan = Upstream(id="x", job_type="scene-creation", step="scene-0", result={})
    with pytest.raises(PermanentError, match="compose"):
        run(video_generation, tmp_path, {"prompt": "x"}, upstream=[orphan])


HOSTILE_VALUES = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    " ",
    "x",
    "a b c. d e.",
    10**30,
    [],
    [1],
    [None],
    ["a"],
    [{}],
    [{"image": 1}],
    [{"image": "x", "durationSeconds": 1}],
    {},
    {"a": 1},
    {"tone": "casual", "length": 3},
    {"scenes": [1]},
    {"name": 5},
    {"limit": -1},
    "summarize",
    "echo",
    "local",
    "script",
    "edl",
]
HOSTILE_KEYS = [
    "prompt",
    "text",
    "narration",
    "content",
    "type",
    "options",
    "width",
    "height",
    "sceneCount",
    "scenes",
    "script",
    "style",
    "imagePath",
    "audioPath",
    "sceneIndex",
    "index",
    "genre",
    "description",
    "preferences",
    "task",
    "input",
    "provider",
    "format",
    "engine",
    "voice",
    "speed",
    "title",
    "labels",
]


@pytest.mark.parametrize(
    "module",
    [
        image_generation,
        audio_synthesis,
        script_generation,
        content_analysis,
        scene_creation,
        world_building,
        video_composition,
        personalization,
        ai_processing,
    ],
    ids=lambda m: m.__name__.rsplit(".", 1)[-1],
)
def test_hostile_data_fails_a_handler_as_permanent_naming_a_field_never_as_a_crash(module, tmp_path):
    """Random shapes in every field a handler reads (fixed seed): each call ends with a result
    or a HandlerError (a `permanent` failure naming the field), never a TypeError or the like,
    which would be retried as if the fault were passing. Its check at submit agrees."""
    rng = random.Random(module.__name__)
    for i in range(150):
        data = {k: rng.choice(HOSTILE_VALUES) for k in rng.sample(HOSTILE_KEYS, rng.randint(0, 8))}
        if module is ai_processing and rng.random() < 0.6:
            data.update(provider="local", task=rng.choice(["summarize", "classify", "extract-keywords", "echo"]))
        try:
            module.check(data)
        except HandlerError:
            pass
        try:
            run(module, tmp_path, data, job_id=f"job-{i}")
        except HandlerError as exc:
            assert ":" in str(exc), exc  # "field: what is wrong"
