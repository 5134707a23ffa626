"""The inspect report: one self-contained HTML file a curator can open anywhere, offline.

Thumbnails are embedded as base64 JPEG, the drift plot is inline SVG, and a Content-Security-Policy forbids
every network load, so what the page shows is all inside the file. It reads the chain, never writes to it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from zoetrope.base.errors import ModelLoadError, UserError
from zoetrope.base.files import atomic_path, check_writable
from zoetrope.curate.replay import logged_model
from zoetrope.loop.chainlog import ChainLog

THUMB = 256
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
SERIES = (("caption_previous", "caption vs previous", "#1f77b4"), ("caption_start", "caption vs start", "#ff7f0e"),
          ("image_previous", "image vs previous", "#2ca02c"))  # (key, label, colour)


@dataclass
class Drift:
    steps: list[int]
    caption_previous: list[float | None]
    caption_start: list[float | None]
    image_previous: list[float | None]
    caption_method: str
    image_method: str


# ------------------------------------------------------------------------------------------- measures


def choose_measures(chain: ChainLog, models: dict, device: str | None, text_model: str | None,
                    image_similarity: str) -> tuple:
    """Pick the caption and image measures; every substitution is stated in the returned notes."""
    from zoetrope.curate import similarity
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import TEXT_EMBEDDER, load_painter, load_text_embedder, quiet_libraries

    quiet_libraries()
    plan = pick_device(device)
    notes: list[str] = []
    painter, painter_error = None, None

    # Only what was asked for by name may come from the network; a fallback is taken from this machine or not
    # at all, so an offline machine never waits on the Hub (the notes say what was used instead, and why).
    painter_named = text_model == "painter" or image_similarity == "vae"

    def get_painter():
        nonlocal painter, painter_error
        if painter is None and painter_error is None:
            spec, revision = logged_model(chain, "painter", models)
            try:
                painter = load_painter(spec, plan, revision, local_only=not painter_named)
            except UserError as exc:
                painter_error = str(exc)
        return painter

    if text_model == "words":
        caption = similarity.word_overlap()
    elif text_model == "painter":
        if get_painter() is None:
            raise UserError(f"--text-model painter: {painter_error}")
        caption = similarity.painter_text_embedder(painter)
    else:
        spec = text_model or TEXT_EMBEDDER
        try:  # the default: the `similarity` extra's copy, or the Hugging Face cache; never a download
            model, tokenizer = load_text_embedder(spec, plan, local_only=text_model is None)
            caption = similarity.sentence_embedder(model, tokenizer, spec)
        except ModelLoadError as exc:
            if text_model is not None:  # the user named this model: not finding it is their error to fix
                raise
            notes.append(f"sentence model unavailable ({exc})")
            if get_painter() is not None:
                caption = similarity.painter_text_embedder(painter)
            else:
                notes.append(f"painter unavailable too ({painter_error})")
                caption = similarity.word_overlap()
    if image_similarity == "pixels":
        image = similarity.pixel_embedder()
    elif get_painter() is not None:
        image = similarity.vae_embedder(painter)
    elif image_similarity == "vae":
        raise UserError(f"--image-similarity vae: {painter_error}")
    else:
        notes.append(f"painter unavailable for VAE latents ({painter_error})")
        image = similarity.pixel_embedder()
    return caption, image, notes


def load_step_images(chain: ChainLog) -> tuple[Image.Image | None, list[Image.Image | None]]:
    """The start image (if any) and each step's image; None for a file that is missing or unreadable."""
    def load(name: str | None) -> Image.Image | None:
        path = chain.folder / name if name else None
        if path is None or not path.is_file():
            return None
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except OSError:
            return None

    start_name = chain.steps[0].get("input_image") if chain.steps else None
    return load(start_name), [load(s["image"]) for s in chain.steps]


def drift(chain: ChainLog, caption_measure, image_measure, start: Image.Image | None,
          images: list[Image.Image | None]) -> Drift:
    """Caption n vs caption n-1 and vs the start text; image n vs its input image (n-1, or start.png)."""
    from zoetrope.curate.similarity import series

    # The text of a prompt-started step 1 is its prompt: that is where the chain began.
    texts = [s["caption"] if s.get("caption") is not None else s["prompt"] for s in chain.steps]
    cap_prev, cap_start = series(caption_measure, texts)
    img_prev, _ = series(image_measure, [start, *images])
    return Drift([s["step"] for s in chain.steps], cap_prev, cap_start, img_prev[1:],
                 caption_measure.method, image_measure.method)


# ------------------------------------------------------------------------------------------- HTML


def thumbnail_uri(image: Image.Image) -> str:
    small, buffer = image.copy(), io.BytesIO()
    small.thumbnail((THUMB, THUMB), Image.LANCZOS)
    small.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def guard_steps(chain: ChainLog) -> list[int]:
    return [s["step"] for s in chain.steps if s["recaptioned"]]


def drift_svg(d: Drift, guards: list[int], width: int = 900, height: int = 280) -> str:
    """Inline SVG line plot: one polyline per series (gaps where a value is unknown), red marks at guard steps.
    The legend sits in a band above the plot area, so it never covers a line (similarities near 1.0 run along
    the top of the area)."""
    left, right, top, bottom = 48, 16, 34, 40
    values = [v for key, _, _ in SERIES for v in getattr(d, key) if v is not None]
    lo = min([0.0, *values])
    n = max(len(d.steps), 2)

    def x(i: int) -> float:
        return left + (width - left - right) * i / (n - 1)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1.0 - (v - lo) / ((1.0 - lo) or 1.0))

    parts = [f'<svg id="drift-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="drift along the chain">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="#fafafa" stroke="#ccc"/>']
    for tick in sorted({lo, 0.0, 0.5, 1.0}):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:.1f}</text>')
    stride = max(1, len(d.steps) // 20)
    for i, step in enumerate(d.steps):
        if i % stride == 0 or i == len(d.steps) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{step}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle" font-size="12">step</text>')
    for step in guards:
        i = d.steps.index(step)
        parts.append(f'<line class="guard-mark" data-step="{step}" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top}" '
                     f'y2="{height - bottom}" stroke="#d62728" stroke-dasharray="4 3"><title>repetition guard fired at '
                     f'step {step}</title></line>')
    for key, label, colour in SERIES:
        path, pen_down = [], False
        for i, v in enumerate(getattr(d, key)):
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x(i):.1f},{y(v):.1f}")
            pen_down = True
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"><title>step {d.steps[i]}: '
                         f'{html.escape(label)} {v:.3f}</title></circle>')
        parts.append(f'<path class="series" data-series="{key}" d="{" ".join(path)}" fill="none" stroke="{colour}" '
                     'stroke-width="1.8"/>')
    legend = [(label, colour, "") for _, label, colour in SERIES] + (
        [("guard fired", "#d62728", ' stroke-dasharray="4 3"')] if guards else [])
    for k, (label, colour, dash) in enumerate(legend):
        lx, ly = left + k * 170, top - 14
        parts.append(f'<g class="legend"><line x1="{lx}" x2="{lx + 18}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="3"{dash}/><text x="{lx + 24}" y="{ly + 4}" font-size="12">{html.escape(label)}'
                     '</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def totals(chain: ChainLog) -> dict:
    seconds = sum(float((s.get("seconds") or {}).get("total") or 0.0) for s in chain.steps)
    energies = [s.get("energy_j") for s in chain.steps]
    known = [e for e in energies if e is not None]
    if not known:
        energy = "unknown (not measured)"
    elif len(known) == len(energies):
        energy = f"{sum(known):.1f} J"
    else:
        energy = f"{sum(known):.1f} J over {len(known)} of {len(energies)} steps (the rest not measured)"
    return {"steps": len(chain.steps), "seconds": seconds, "energy": energy, "guard": len(guard_steps(chain))}


def _fmt(v: float | None) -> str:  # a similarity, or a dash where it is unknown
    return "–" if v is None else f"{v:.3f}"


def step_figure(record: dict, image: Image.Image | None, d: Drift, i: int) -> str:
    events, guard = record.get("events") or [], record["recaptioned"]
    picture = (f'<img class="thumb" alt="step {record["step"]}" src="{thumbnail_uri(image)}">' if image is not None
               else f'<div class="missing">{html.escape(record["image"])} missing</div>')
    caption = record.get("caption")
    text = html.escape(caption) if caption is not None else f"<i>start prompt:</i> {html.escape(record['prompt'])}"
    event_items = "".join(
        f"<li>{html.escape(e.get('kind', '?'))}: "
        f"{html.escape(json.dumps({k: v for k, v in e.items() if k != 'kind'}, ensure_ascii=False))}</li>"
        for e in events)
    seconds = record.get("seconds") or {}
    return (
        f'<figure class="step{" guard" if guard else ""}" id="step-{record["step"]}">{picture}'
        f'<figcaption><b>{record["step"]}</b>{" <span class=badge>guard</span>" if guard else ""} {text}'
        f'<div class="meta">seed {record["seed"]} · {float(seconds.get("total") or 0):.2f}s '
        f'(caption {float(seconds.get("caption") or 0):.2f}, paint {float(seconds.get("paint") or 0):.2f})'
        f'<br>drift: caption/prev {_fmt(d.caption_previous[i])} · caption/start {_fmt(d.caption_start[i])} · '
        f'image/prev {_fmt(d.image_previous[i])}</div>'
        f'{f"<ul class=events>{event_items}</ul>" if events else ""}</figcaption></figure>'
    )


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}
figure.step{margin:0;border:1px solid #ddd;padding:6px;background:#fff}
figure.step.guard{border:2px solid #d62728}
img.thumb{width:100%;height:auto;display:block}
.missing{height:180px;display:flex;align-items:center;justify-content:center;background:#eee;color:#a00}
.meta{color:#666;font-size:12px;margin-top:4px} .badge{background:#d62728;color:#fff;padding:0 5px;border-radius:3px}
ul.events{margin:4px 0 0;padding-left:18px;font-size:12px;color:#833}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td.was{color:#a00;text-decoration:line-through}
"""

SCRIPT = """window.addEventListener('load', function () {
  var ok = 0; document.querySelectorAll('img.thumb').forEach(function (im) { if (im.complete && im.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-thumbs-loaded', String(ok));
});"""


def flat(value, prefix: str = "") -> dict[str, str]:
    """A config as {"paint.steps": "4", ...}: one readable row per setting, lists joined, null as "–"."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {prefix[:-1]: ", ".join(map(str, value)) or "–"}
    return {prefix[:-1]: "–" if value is None else str(value)}


def setting_changes(chain: ChainLog) -> list[tuple[str, str, str, str]]:
    """(where, setting, before, after): what the fork changed from its parent's config (when the parent is
    found), then each step whose paint or caption settings differ from the step before (a resume or fork
    with other settings). A setting appearing (the first drift step's strength), or a caption the repetition
    guard sampled, is not a change."""
    from zoetrope.curate.lineage import find_parent

    rows, entry = [], chain.header.get("parent")
    parent = find_parent(chain, entry) if entry else None
    if parent is not None:
        mine, theirs = flat(chain.header.get("config") or {}), flat(parent.header.get("config") or {})
        rows += [(f"fork of {entry.get('run')} at step {entry.get('step')}", key, theirs.get(key, "–"), value)
                 for key, value in mine.items() if value != theirs.get(key, "–")]
    previous: dict[str, str] = {}
    for record in (r for r in chain.steps if not r.get("recaptioned")):  # the guard's sampling is no setting
        now = flat({"paint": record.get("paint_params") or {}, "caption": record.get("caption_params") or {}})
        rows += [(f"from step {record['step']}", key, previous[key], value) for key, value in now.items()
                 if previous.get(key, "–") not in ("–", value) and value != "–"]
        previous |= {k: v for k, v in now.items() if v != "–"}
    return rows


def settings_section(chain: ChainLog) -> str:
    """The chain's settings as a table (its header's config; `steps` says how many are logged, since a resume
    sets its own stop), and what changed between its runs."""
    config, logged = flat(chain.header.get("config") or {}), len(chain.steps)
    if config.get("steps") != str(logged):
        stop = config.get("steps", "–")
        config["steps"] = f"{logged} logged (the first run: {'endless' if stop == '–' else f'stop at {stop}'})"
    changes = setting_changes(chain)
    changed = "".join(f"<tr><td>{html.escape(w)}</td><th>{html.escape(k)}</th><td class=was>{html.escape(a)}</td>"
                      f"<td>{html.escape(b)}</td></tr>" for w, k, a, b in changes)
    between = (f'<table id="changes"><tr><th>where</th><th>setting</th><th>before</th><th>after</th></tr>{changed}'
               "</table>" if changes else '<p id="changes">no setting changed between runs</p>')
    return (f'<section id="settings"><h2>Settings</h2><h3>what changed between runs</h3>{between}'
            f'<h3>current settings</h3><table id="settings-table">{table_rows(config)}</table></section>')


def table_rows(values: dict[str, str]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in values.items())


def render_html(chain: ChainLog, d: Drift, images: list[Image.Image | None], notes: list[str]) -> str:
    h, t, guards = chain.header, totals(chain), guard_steps(chain)
    run = html.escape(str(h.get("run_id", chain.folder.name)))
    rows = "".join(f"<tr><th>{html.escape(role)}</th><td>{html.escape(str(m.get('id')))}</td>"
                   f"<td>{html.escape(str(m.get('revision')))}</td></tr>" for role, m in (h.get("models") or {}).items())
    parent = h.get("parent")
    parent_line = (f"<p>forked from run <b>{html.escape(str(parent.get('run')))}</b> at step {parent.get('step')}</p>"
                   if parent else "")
    figures = "\n".join(step_figure(r, images[i], d, i) for i, r in enumerate(chain.steps))
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>Zoetrope chain {run}</title><style>{STYLE}</style></head>
<body>
<h1>Chain {run}</h1>
<p>created {html.escape(str(h.get("created")))} · {html.escape(str(h.get("device")))}, {html.escape(str(h.get("dtype")))}</p>
{parent_line}
<section id="totals"><h2>Totals</h2><table>
<tr><th>steps</th><td>{t["steps"]}</td></tr>
<tr><th>time</th><td>{t["seconds"]:.1f} s</td></tr>
<tr><th>energy</th><td>{html.escape(t["energy"])}</td></tr>
<tr><th>repetition guard fired</th><td>{t["guard"]} time(s){(": steps " + ", ".join(map(str, guards))) if guards else ""}</td></tr>
</table></section>
<section id="drift"><h2>Drift</h2>
{drift_svg(d, guards)}
<p class="methods" id="caption-method">caption similarity: {html.escape(d.caption_method)}</p>
<p class="methods" id="image-method">image similarity: {html.escape(d.image_method)}</p>
{f'<ul class="notes">{note_items}</ul>' if notes else ""}
</section>
<section id="contact-sheet"><h2>Contact sheet</h2><div class="sheet">
{figures}
</div></section>
<section id="header"><h2>Models and versions</h2>
<table><tr><th>role</th><th>id</th><th>revision</th></tr>{rows}</table>
<h3>versions</h3><table>{table_rows(flat(h.get("versions") or {}))}</table>
</section>
{settings_section(chain)}
<script>{SCRIPT}</script>
</body></html>
"""


def write_report(chain: ChainLog, out: Path, models: dict | None = None, device: str | None = None,
                 text_model: str | None = None, image_similarity: str = "auto") -> list[str]:
    """Write the report to `out` (never inside the chain folder's files); returns lines for the terminal."""
    out = Path(out)
    if not chain.steps:
        raise UserError(f"{chain.folder}: the chain has no steps to inspect")
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out must name an .html file but is {out}")
    if out.resolve().parent == chain.folder.resolve():
        raise UserError(f"--out {out}: write the report outside the chain folder (the chain is read-only here)")
    check_writable(out)  # before any model loads
    caption_measure, image_measure, notes = choose_measures(chain, models or {}, device, text_model, image_similarity)
    start, images = load_step_images(chain)
    d = drift(chain, caption_measure, image_measure, start, images)
    if missing := [s["image"] for s, im in zip(chain.steps, images, strict=True) if im is None]:
        notes.append(f"missing images: {', '.join(missing)}")
    notes = [plain_note(n) for n in notes + chain.warnings]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, sync=False) as tmp:  # a failed write leaves no half report at `out`
        tmp.write_text(render_html(chain, d, images, notes), encoding="utf-8")
    lines = [f"caption similarity: {d.caption_method}", f"image similarity: {d.image_method}"]
    return lines + [f"note: {n}" for n in notes]


def plain_note(note: str) -> str:
    """A note as a curator reads it: the Hugging Face cache named, not its absolute path here (the report
    travels), and the home folder as ~."""
    from huggingface_hub import constants

    home, note = str(Path.home()), note.replace(f" ({constants.HF_HUB_CACHE})", "")
    return note.replace(home + "/", "~/") if home != "/" else note


@dataclass(frozen=True)
class Inspection:
    out: Path
    lines: list[str]  # which similarity measures were used, and notes


def inspect_folder(folder: Path, out: Path | None = None, models: dict | None = None, device: str | None = None,
                   text_model: str | None = None, image_similarity: str = "auto") -> Inspection:
    """`inspect`: the report of the chain in `folder`, by default renders/reports/<run>.html."""
    from zoetrope.loop.chainlog import read_chain

    chain = read_chain(folder)
    out = out or Path("renders/reports") / f"{chain.header.get('run_id', chain.folder.name)}.html"
    return Inspection(out, write_report(chain, out, models, device, text_model, image_similarity))
