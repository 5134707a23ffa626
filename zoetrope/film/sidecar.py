"""The film's record (FILM.json beside FILM.mp4): its provenance, as a chain's header and step records are a
chain's. Per scene and segment: the engine, the models and revisions (LoRAs with their sha256, the upscaler),
seeds, prompts, conditioning (per video chunk: its key, seed, frames and the digests of the frames it started
from), where the segment falls in the film, and the audio and its sync. Written after the film, atomically.
"""

from __future__ import annotations


def sidecar(inputs, layout, models) -> dict:
    """The film's provenance: per scene and segment, the engine, models and revisions, seeds, prompts,
    conditioning, and where it falls in the film (seconds)."""
    from zoetrope.film.engines import registered
    from zoetrope.film.engines.clips import segment_frames
    from zoetrope.stages.lora import loras_of

    refs = {"painter": models.painter.ref.as_log() if models.painter is not None else None}
    if refs["painter"] is not None and loras_of(models.painter):
        refs["painter"]["loras"] = [r.as_header() for r in loras_of(models.painter)]
    if models.upscaler is not None:
        refs["upscaler"] = models.upscaler.identity
    refs |= {e.name: record for e in registered() if (record := e.record(models, refs["painter"])) is not None}
    scenes, offset = [], 0
    for scene in layout.scenes:
        script, segments = scene.script, []
        for segment in scene.segments:
            i, n = segment.index, len(segment.paths)
            hold, transition = segment_frames(script, i)
            entry = {"keyframe": i, "engine": segment.engine, "prompt": script.prompt_of(i),
                     "negative_prompt": script.negative_of(i), "seed": script.seed_of(i),
                     "frames": n, "hold_frames": hold, "transition_frames": transition,
                     "seconds": [round(offset / script.fps, 4), round((offset + n) / script.fps, 4)],
                     "model": refs.get(segment.engine, refs["painter"])}
            if script.keyframes[i].image:
                entry["image"] = script.keyframes[i].image
            if script.keyframes[i].source:
                entry["source"] = script.keyframes[i].source
            if segment.chunks:
                entry["chunks"] = [c.record() for c in segment.chunks]
            segments.append(entry)
            offset += n
        record = {"name": scene.name, "size": [scene.width, scene.height], "steps": script.steps,
                  "guidance": script.guidance, "scheduler": script.scheduler, "segments": segments}
        for part in scene.parts.values():  # e.g. the walk's call shape, part of every frame's key (walk_calls)
            record |= part.record()
        scenes.append(record)
    return {"kind": "zoetrope-film", "version": 1, "title": inputs.film.title, "film": inputs.out.name,
            "frames": len(layout.shots), "fps": layout.fps, "size": list(layout.size), "fps_out": layout.fps_out,
            "choices": {role: {"spec": c.spec, "revision": c.revision, "origin": c.origin}
                        for role, c in inputs.choices.items()},
            "models": refs, "scenes": scenes,
            "audio": None if inputs.film.audio is None else {
                "file": str(inputs.film.audio),
                **(inputs.film.audio_spec.model_dump(exclude={"file"}) if inputs.film.audio_spec else {})}}
