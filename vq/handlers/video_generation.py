"""video-generation: a whole video from a prompt, run as a graph of child jobs.

plan(data) splits the work into steps: one script; per scene an image and a narration (which
can run in parallel), then a scene joining the two; last a composition of all scenes. The
submitter creates one child job per step, each depending on the steps in its dependsOn, and
makes this parent job depend on "compose", so handle() runs last and reports the composed
video. Run with no upstream at all (directly, outside a queue), handle() runs the plan
itself, step by step, inside this job, with the same child handlers.

Fanned out, each child job checkpoints its own work (the composition per rendered scene) and
this job, which only reads the composition's result, has nothing to resume. Run inline, it
checkpoints after every step (ctx.checkpoint, vq/checkpoints.py), and the step in progress
checkpoints inside that state (the composition's scenes), so a later attempt skips the steps,
and the scenes, already done (`resumedSteps` in the result).
"""

from __future__ import annotations

import dataclasses
import importlib

from vq.context import Upstream
from vq.errors import PermanentError
from vq.handlers._common import SCENES_NOT_A_LIST, dimensions, int_field, options, text_field, write_json

DEFAULT_SIZE = (640, 360)
MAX_SCENES = 10


def _given_scenes(data: dict) -> list | None:
    scenes = data.get("scenes")
    if scenes is not None and not isinstance(scenes, list):
        # `"scenes": 6` made the default 3 scenes without a word: say what it takes
        raise PermanentError(SCENES_NOT_A_LIST)
    script = data.get("script")
    if not (isinstance(scenes, list) and scenes) and isinstance(script, dict):
        scenes = script.get("scenes")  # the spec's example passes a whole script
    return scenes if isinstance(scenes, list) and scenes else None


def scene_count(data: dict) -> int:
    given = _given_scenes(data)
    if given:
        if len(given) > MAX_SCENES:
            raise PermanentError(f"scenes: at most {MAX_SCENES} scenes, got {len(given)}")
        return len(given)
    opts = options(data)
    if opts.get("sceneCount") is not None:
        return int_field(opts, "sceneCount", 3, 1, MAX_SCENES, label="options.sceneCount")
    return int_field(data, "sceneCount", 3, 1, MAX_SCENES)


def plan(data: dict) -> list[dict]:
    """The child steps, in an order where every step comes after those it depends on."""
    prompt = text_field(data, "prompt")
    count = scene_count(data)
    width, height = dimensions(data, DEFAULT_SIZE)
    style = text_field(data, "style", required=False) or str(options(data).get("style") or "cinematic")
    script_data = {"prompt": prompt, "sceneCount": count, "style": style}
    if _given_scenes(data):
        script_data["scenes"] = _given_scenes(data)
    if isinstance(data.get("script"), dict) and isinstance(data["script"].get("title"), str):
        script_data["title"] = data["script"]["title"]

    steps = [{"step": "script", "jobType": "script-generation", "data": script_data, "dependsOn": []}]
    for i in range(count):
        steps += [
            {
                "step": f"image-{i}",
                "jobType": "image-generation",
                "data": {"sceneIndex": i, "width": width, "height": height},
                "dependsOn": ["script"],
            },
            {"step": f"audio-{i}", "jobType": "audio-synthesis", "data": {"sceneIndex": i}, "dependsOn": ["script"]},
            {
                "step": f"scene-{i}",
                "jobType": "scene-creation",
                "data": {"sceneIndex": i},
                "dependsOn": [f"image-{i}", f"audio-{i}"],
            },
        ]
    steps.append(
        {
            "step": "compose",
            "jobType": "video-composition",
            "data": {},
            "dependsOn": [f"scene-{i}" for i in range(count)],
        }
    )
    return steps


def _resumed_steps(ctx, steps: list[dict]) -> tuple[dict[str, Upstream], dict]:
    """The steps an earlier attempt finished (from ctx.resumed_from) and the checkpoint of the
    step it was in ({step, state}; {} for none)."""
    saved = ctx.resumed_from if isinstance(ctx.resumed_from, dict) else {}
    names = {s["step"]: s["jobType"] for s in steps}
    done = {}
    for name, item in (saved.get("steps") or {}).items():
        if names.get(name) and isinstance(item, dict) and isinstance(item.get("result"), dict):
            done[name] = Upstream(id=f"{ctx.job_id}-{name}", job_type=names[name], step=name, result=item["result"])
    current = saved.get("current")
    return done, current if isinstance(current, dict) and current.get("step") in names else {}


def run_inline(ctx, data: dict) -> dict:
    """Run every step of plan(data) in this process, in order; returns the compose result
    (with `resumedSteps`: those an earlier attempt had done)."""
    steps = plan(data)
    done, current = _resumed_steps(ctx, steps)
    resumed = [s["step"] for s in steps if s["step"] in done]

    def save(in_progress: dict | None = None) -> None:
        state: dict = {"steps": {name: {"result": up.result} for name, up in done.items()}}
        if in_progress is not None:
            state["current"] = in_progress
        ctx.checkpoint(state)

    for n, step in enumerate(steps):
        name, job_type = step["step"], step["jobType"]
        if name in done:
            ctx.log.info("step %s: done by an earlier attempt, skipped", name)
            continue
        lo, hi = 10 + 80 * n / len(steps), 10 + 80 * (n + 1) / len(steps)
        child = dataclasses.replace(
            ctx,
            job_id=f"{ctx.job_id}-{name}",
            job_type=job_type,
            artifacts_root=ctx.artifacts_dir,
            log=ctx.log.getChild(name),
            report_progress=lambda p, m, lo=lo, hi=hi, name=name: ctx.progress(
                lo + (hi - lo) * p / 100, f"{name}: {m}" if m else name
            ),
            load_upstream=lambda deps=step["dependsOn"]: [done[d] for d in deps],
            # The step's own checkpoints (the composition's scenes) go inside this job's.
            resumed_from=current.get("state") if current.get("step") == name else None,
            save_checkpoint=lambda state, name=name: save({"step": name, "state": state}),
        )
        handler = importlib.import_module(f"vq.handlers.{job_type.replace('-', '_')}").handle
        done[name] = Upstream(id=child.job_id, job_type=job_type, step=name, result=handler(child, dict(step["data"])))
        save()
    composed = done["compose"].result
    if composed is None:  # every handler returns a dict; Upstream.result is optional for jobs not yet run
        raise PermanentError("compose: the video-composition step returned no result")
    return {**composed, "resumedSteps": resumed}


def handle(ctx, data: dict) -> dict:
    ctx.progress(5, "looking for the composition")
    compose = ctx.upstream_by_step().get("compose")
    if compose is not None:
        composed = compose.result
    elif ctx.upstream():
        raise PermanentError("compose: this job has upstream jobs but none is the plan's 'compose' step")
    else:
        ctx.log.info("no upstream jobs: running the video plan inside this job")
        composed = run_inline(ctx, data)
    if not composed or not composed.get("path"):
        raise PermanentError("compose: the composition step left no video or timeline")
    ctx.progress(92, "writing the video summary")
    summary = {
        "video": composed["path"],
        "format": composed.get("format"),
        "durationSeconds": composed.get("durationSeconds"),
        "scenes": composed.get("scenes"),
        "title": composed.get("title"),
        "timeline": composed.get("timeline", []),
    }
    if composed.get("resumedSteps"):  # run inline, and resumed from a checkpoint
        summary["resumedSteps"] = composed["resumedSteps"]
    path = write_json(ctx, "video.json", summary)
    ctx.log.info("video %r: %s, %.2fs", summary["title"], summary["format"], summary["durationSeconds"] or 0)
    ctx.progress(100, "video ready")
    return {**summary, "path": str(path), "artifacts": [str(path), *composed.get("artifacts", [])]}
