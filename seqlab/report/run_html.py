"""The page's first section: the run as its manifest tells it. Figures and speed (documents
and words per second, for a resumed run the last attempt's and the whole run's), a header
per model (task, scheme, labels, decoder, precision), the run's state and configuration,
and the input files that could not be read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from seqlab.report.page import dl, esc, n, section
from seqlab.report.run_info import ENTITIES, FRAMES, ModelHeader, Rate, per_second, rates
from seqlab.store.manifest import FailedInput, Manifest


def when(stamp: str | None) -> str:
    """An ISO timestamp as ``2026-01-31 12:00:00 UTC``."""
    if not stamp:
        return "–"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return stamp


def duration(seconds: float) -> str:
    """
    >>> duration(6.45), duration(3725)
    ('6.5 s', '1 h 2 min 5 s')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    return (f"{hours} h " if hours else "") + f"{rest // 60} min {rest % 60} s"


def value(item: object) -> str:
    """A manifest value for the page: None as a dash, booleans as yes / no.

    >>> value(None), value(True), value(256)
    ('–', 'yes', '256')
    """
    if item is None:
        return "–"
    if isinstance(item, bool):
        return "yes" if item else "no"
    return esc(str(item))


def title(models: list[ModelHeader], manifest: Manifest) -> str:
    """What the page is about: the model's name, or the keys of a run of several."""
    if len(models) > 1:
        return " · ".join(h.key for h in models)
    return manifest.model.name


def run_section(manifest: Manifest, models: list[ModelHeader]) -> tuple[str, str, str]:
    counts = manifest.counts
    figures = [("documents", n(counts.get("documents", manifest.rows.written))),
               ("words", n(counts.get("tokens", 0)))]
    kinds = {h.kind for h in models}
    figures += [("entities", n(counts.get("entities", 0)))] if ENTITIES in kinds else []
    figures += [("frames", n(counts.get("frames", 0)))] if FRAMES in kinds else []
    speed = rates(manifest)
    figures += [("elapsed" if len(speed) == 1 else "last attempt",
                 duration(manifest.elapsed_s))]
    if len(speed) == 1:
        figures += [per_second(speed[0].documents, speed[0].seconds, "document")[::-1],
                    per_second(speed[0].words, speed[0].seconds, "word")[::-1]]
    tiles = "".join(f'<div class="tile" data-figure="{esc(what)}"><b>{shown}</b>'
                    f"<span>{esc(what)}</span></div>" for what, shown in figures)
    cards = "".join(f'<div class="card"><h3>{name}</h3>{dl(items)}</div>'
                    for name, items in _run_cards(manifest))
    body = (f'<div class="tiles">{tiles}</div>{_speed(speed) if len(speed) > 1 else ""}'
            f'<div class="models">{"".join(_model_card(h) for h in models)}</div>'
            f'<div class="grid" style="--w:20rem">{cards}</div>'
            f"{_failed_inputs(manifest.failed_inputs)}")
    return section("run", "Run", body)


def _speed(speed: list[Rate]) -> str:
    """A resumed run's speed: the last attempt's and the whole run's, one row each."""
    rows = []
    for rate in speed:
        documents = " ".join(per_second(rate.documents, rate.seconds, "document"))
        words = " ".join(per_second(rate.words, rate.seconds, "word"))
        note = f'<br><span class="note">{esc(rate.note)}</span>' if rate.note else ""
        rows.append(f'<tr data-scope="{esc(rate.scope)}"><td>{esc(rate.scope)}{note}</td>'
                    f'<td class="n">{n(rate.documents) if rate.documents is not None else "–"}'
                    f'</td><td class="n">{duration(rate.seconds)}</td>'
                    f'<td class="n">{documents}</td><td class="n">{words}</td></tr>')
    return ('<table class="speed" style="margin-bottom:1rem"><tr><th>speed</th>'
            '<th class="n">documents</th><th class="n">time</th><th class="n">documents</th>'
            f'<th class="n">words</th></tr>{"".join(rows)}</table>')


def _model_card(h: ModelHeader) -> str:
    """A model's header: what it does, its labels and how it was decoded and run."""
    items = [(k, esc(v)) for k, v in h.fields()]
    items += [("revision", value(h.revision or None)),
              ("columns", esc(", ".join(h.columns)))]
    return (f'<div class="model" data-model="{esc(h.key or h.task)}"><h3>'
            f'<span class="key">{esc(h.key or h.task)}</span>'
            f'<span class="note">{esc(h.kind)}</span></h3>'
            f'<p class="name">{esc(h.name)}</p>{dl(items)}</div>')


def _run_cards(m: Manifest) -> list[tuple[str, list[tuple[str, str]]]]:
    config, runs = m.config, m.attempts
    attempts = (f'<span title="{esc(", ".join(when(a.started_at) for a in runs))}">'
                f'{len(runs)} &middot; {" → ".join(esc(a.engine) for a in runs)}</span>')

    def get(mapping: Mapping[str, Any], key: str) -> str:
        return value(mapping.get(key))

    state = ("yes", "complete") if m.complete else ("no", "incomplete")
    device = f"{get(config, 'device')} / {get(config, 'precision') or get(config, 'dtype')}"
    return [
        ("Run", [("run id", value(m.run_id)), ("engine", value(m.engine)),
                 ("state", '<span class="badge {}">{}</span>'.format(*state)),
                 ("started", when(m.processed_at)),
                 ("finished", when(m.finished_at)),
                 ("attempts", attempts if runs else "–"), ("input", get(config, "input"))]),
        ("Configuration", [("window", get(config, "max_length")),
                           ("stride", get(config, "stride")),
                           ("aggregation", get(config, "aggregation")),
                           ("batch tokens", get(config, "batch_tokens")),
                           ("device / precision asked", device),
                           ("text kept", get(config, "keep_text"))]),
    ]


def _failed_inputs(failed: tuple[FailedInput, ...]) -> str:
    if not failed:
        return ""
    rows = "".join(f'<tr><td class="t">{esc(f.fragment)}</td>'
                   f'<td class="n">{n(f.rows) if f.rows is not None else "–"}</td>'
                   f'<td class="t">{esc(f.error)}</td></tr>' for f in failed)
    return (f'<h3 style="margin-top:1rem">Input files that could not be read ({len(failed)})'
            f'</h3><table><tr><th>file</th><th class="n">rows</th><th>error</th></tr>{rows}'
            "</table><p class=\"note\">Rerun the same annotate command to retry them.</p>")
