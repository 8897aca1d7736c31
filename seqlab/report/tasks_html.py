"""The page's sections of tagging models (POS: each tag's words and a sample sentence with its
tags) and of semantic role labellers (frames: predicates, argument roles and the frames of a
sample document), one section per model, from ``seqlab.report.tasks``."""

from __future__ import annotations

from seqlab.labels import OUTSIDE
from seqlab.report.gather import PALETTE
from seqlab.report.page import bar, chip, esc, frame_spans, n, section, share
from seqlab.report.show import outermost
from seqlab.report.tasks import TAG_DOCUMENTS, FramesView, TagsView

TOP_PREDICATES = 20


def colours(labels: list[str]) -> dict[str, str]:
    """A colour per label, in sorted order, so that a model's colours hold from run to run."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def count_rows(kind: str, counts: dict[str, int], score_sums: dict[str, float], total: int,
               palette: dict[str, str]) -> str:
    """Table rows of labels (tags, roles) by count: chip, count, share of ``total``, mean
    score and a bar, most frequent first."""
    top = max(counts.values(), default=0)
    return "".join(
        f'<tr data-{kind}="{esc(label)}"><td>{chip(label, palette)}</td>'
        f'<td class="n" data-count="{count}">{count:,}</td>'
        f'<td class="n">{share(count, total)}</td>'
        f'<td class="n">{score_sums[label] / count:.3f}</td><td>{bar(count, top)}</td></tr>'
        for label, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def tags_section(view: TagsView) -> tuple[str, str, str]:
    key = view.header.key or view.header.task
    palette = colours([*view.header.labels, *view.counts])
    total = view.words
    rows = count_rows("tag", view.counts, view.score_sums, total, palette)
    table = ('<table><tr><th>tag</th><th class="n">words</th><th class="n">share</th>'
             f'<th class="n">mean score</th><th style="width:30%"></th></tr>{rows}</table>')
    words = "".join(f'<span class="word" title="{esc(w["label"])} {w["score"]:.3f}">'
                    f'<b>{esc(w["text"])}</b>{chip(w["label"], palette)}</span>'
                    for w in view.sentence)
    sentence = (f'<h3>A sentence of {esc(str(view.sentence_doc))}</h3>'
                f'<div class="words" data-doc-id="{esc(str(view.sentence_doc))}">{words}'
                "</div>" if view.sentence else '<p class="note">No ok document has words.</p>')
    bound = (f"the first {view.documents:,} ok documents" if view.documents < TAG_DOCUMENTS
             else f"the first {view.documents:,} ok documents (of more)")
    note = (f"{esc(view.header.name)}: the tags of the {total:,} words of {bound}, with their "
            "mean score (softmax probability).")
    body = f'<div class="cols"><div>{table}</div><div>{sentence}</div></div>'
    return section(f"pos-{key}", f"Tags · {key}", body, note)


def frames_section(view: FramesView) -> tuple[str, str, str]:
    key = view.header.key or view.header.task
    argued = view.frames - view.bare
    figures = [("frames", n(view.frames)), ("documents with frames", n(view.documents)),
               ("with arguments", n(argued)),
               ("without arguments", f"{view.bare:,} ({share(view.bare, view.frames)})"),
               ("arguments per argued frame",
                f"{view.arguments / argued:.2f}" if argued else "–"),
               ("distinct predicates", n(len(view.predicates)))]
    tiles = "".join(f'<div class="tile" data-figure="{esc(what)}"><b>{shown}</b>'
                    f"<span>{esc(what)}</span></div>" for what, shown in figures)
    palette = colours([*_roles(view.header.labels), *view.roles])
    body = (f'<div class="tiles">{tiles}</div><div class="cols"><div>{_predicates(view)}</div>'
            f"<div>{_roles_table(view, palette)}</div></div>{_sample(view, palette)}")
    note = (f"{esc(view.header.name)}: every frame of the frames table; a predicate is its "
            "text, lower-cased. A frame without arguments is a predicate the model found no "
            "role for (often an auxiliary such as was or is).")
    return section(f"srl-{key}", f"Frames · {key}", body, note)


def _roles(labels: tuple[str, ...]) -> list[str]:
    """The argument roles of a role labeller's labels (B-ARG0 -> ARG0; not the predicate)."""
    roles = {label.split("-", 1)[-1] for label in labels if label != OUTSIDE}
    return sorted(roles - {"V"})


def _predicates(view: FramesView) -> str:
    top = view.predicates.most_common(TOP_PREDICATES)
    most = top[0][1] if top else 0
    rows = "".join(f'<tr data-predicate="{esc(text)}"><td>{esc(text)}</td>'
                   f'<td class="n" data-count="{count}">{count:,}</td>'
                   f'<td class="n">{view.bare_predicates[text]:,}</td>'
                   f"<td>{bar(count, most)}</td></tr>" for text, count in top)
    return (f"<h3>The {len(top)} most frequent predicates</h3><table><tr><th>predicate</th>"
            '<th class="n">frames</th><th class="n">without arguments</th>'
            f'<th style="width:35%"></th></tr>{rows}</table>')


def _roles_table(view: FramesView, palette: dict[str, str]) -> str:
    rows = count_rows("role", view.roles, view.role_scores, view.arguments, palette)
    return ('<h3>Arguments by role</h3><table><tr><th>role</th><th class="n">arguments</th>'
            '<th class="n">share</th><th class="n">mean score</th>'
            f'<th style="width:30%"></th></tr>{rows}</table>')


def _sample(view: FramesView, palette: dict[str, str]) -> str:
    sample = view.sample
    if not sample:
        return '<p class="note">No frame has arguments.</p>'
    items = "".join(frame_item(sample["text"], frame, palette) for frame in sample["frames"])
    left = [f"{sample['more']:,} more frames with arguments"] if sample["more"] else []
    left += [f"{sample['bare']:,} frames without arguments"] if sample["bare"] else []
    more = f'<p class="note">{" and ".join(left)} not shown.</p>' if left else ""
    return (f'<h3 style="margin-top:1rem">Frames of {esc(str(sample["doc_id"]))}</h3>'
            f'<ol class="frames" data-doc-id="{esc(str(sample["doc_id"]))}">{items}</ol>'
            f"{more}")


def frame_item(text: str, frame: dict, palette: dict[str, str]) -> str:
    """A frame as the stretch of text from its first to its last span: the predicate
    underlined, each argument marked with its role."""
    predicate = {**frame["predicate"], "role": "V"}
    spans = outermost([predicate, *frame["arguments"]])  # overlaps are not expected
    pieces = frame_spans(text, spans, predicate, lambda span, words: (
        f'<mark class="ent" style="--c:{palette.get(span["role"], "#ddd")}" '
        f'title="{esc(span["role"])} {span["score"]:.3f}">{words}'
        f'<span class="tag">{esc(span["role"])}</span></mark>'))
    return (f'<li data-predicate="{esc(frame["predicate"]["text"])}"><span class="pred">'
            f'{esc(frame["predicate"]["text"])}</span> {pieces}</li>')
