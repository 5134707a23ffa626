"""The drift engine (Deforum's 2D motion): each frame the one before, warped by the segment's `motion:` and
repainted image-to-image by the film's painter (stages/drift.py DriftClipPainter).

Seeds advance per frame, the motion schedules are evaluated per frame and are part of the key, and with
`color_coherence: match_first` every frame keeps the palette of the segment's first picture (engines/clips.py).
A `motion:` selects this engine where no engine is named. On Ray workers the drift paints with the workers'
painter, as the walk does.
"""

from __future__ import annotations

from zoetrope.film.engines import register
from zoetrope.film.engines.clipbase import ClipEngine
from zoetrope.settings.engines import EngineSpec


def _drift_painter(painter, scheduler: str, speed: dict | None):
    from zoetrope.stages.drift import DriftClipPainter

    return DriftClipPainter(painter, scheduler=scheduler, speed=speed)


class Drift(ClipEngine):
    spec = EngineSpec("drift", "frame-by-frame warp and repaint of the painter (motion)", frame_guidance=True,
                      motion=True)
    paints_with_painter = True
    drifts = True

    def check_film(self, film) -> None:
        if any(s.color_coherence_of(i) == "match_first" for _, s in film.scenes for i in range(len(s.keyframes))
               if s.engine_of(i) == self.name):
            from zoetrope.stages.drift import require_skimage

            require_skimage()  # before the render, not at its first drift frame

    def planner(self, models, script):
        """One per scheduler (the scene's, as a walk uses it), over the film's painter (or the workers')."""
        drifts = models.state.setdefault(self.name, {})
        if script.scheduler not in drifts:
            drifts[script.scheduler] = _drift_painter(models.painter, script.scheduler, models.speed)
        return drifts[script.scheduler]

    def worker_clip(self, worker, script):
        if self.name in worker.clips:  # a caller that hands its own clip painter (engines/clips.py render_chunks)
            return worker.clips[self.name]
        drifts = worker.state.setdefault(self.name, {})
        if script.scheduler not in drifts:
            drifts[script.scheduler] = _drift_painter(worker.painter, script.scheduler, None)
        return drifts[script.scheduler]

    def record(self, models, painter: dict | None) -> dict | None:
        return {"painter": painter} if painter else None


register(Drift())
