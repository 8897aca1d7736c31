"""seqlab.config: checks before any work, keyword aliases, and what a resumed run must match."""

import dataclasses

import pytest

from seqlab.config import RESUMABLE, TABLE_OPTIONS, AnnotateConfig, build_config, load_yaml
from seqlab.errors import ConfigError


def config(**options) -> AnnotateConfig:
    return build_config(input="in", output="out", **options)


@pytest.mark.parametrize("name", ["max_length", "max_chars", "batch_tokens", "batch_docs",
                                  "rows_per_part"])
@pytest.mark.parametrize("value", [0, -3])
def test_sizes_must_be_positive(name, value):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError, match=f"{flag} must be positive") as error:
        config(**{name: value})
    assert flag in error.value.fix


def test_limit_may_be_zero_but_not_negative():
    assert config(limit=0).limit == 0
    with pytest.raises(ConfigError, match="--limit must be 0 or more"):
        config(limit=-1)


@pytest.mark.parametrize("option, value", [("engine", "spark"), ("decoder", "crf"),
                                           ("aggregation", "mean"), ("scheme", "bilou2")])
def test_unknown_choices_are_refused(option, value):
    with pytest.raises(ConfigError, match=repr(value)):
        config(**{option: value})


def test_scheme_aliases_are_normalised():
    assert config(scheme="BIO").scheme == "iob2"


@pytest.mark.parametrize("drop, keep", [(True, False), (False, True)])
def test_drop_text_is_the_command_line_spelling_of_keep_text(drop, keep):
    built = config(drop_text=drop)
    assert built.keep_text is keep
    assert "drop_text" not in built.to_dict() and built.fingerprint()["keep_text"] is keep


def test_unknown_options_are_refused_with_the_valid_names():
    with pytest.raises(ConfigError, match=r"unknown options \['colour', 'max_len'\]") as error:
        config(max_len=64, colour="red", stride=8)
    valid = error.value.fix.removeprefix("valid options are ").split(", ")
    assert valid == sorted(valid)
    assert {"max_length", "stride", "drop_text", "engine_options", "input"} <= set(valid)


def test_fingerprint_leaves_out_exactly_the_resumable_options():
    fields = {f.name for f in dataclasses.fields(AnnotateConfig)}
    # where and how fast it runs and how its files are cut, as the fields are marked
    assert set(RESUMABLE) == {"engine", "engine_options", "device", "storage_options",
                              "batch_tokens", "batch_docs", "rows_per_part", "overwrite",
                              "take_over", "run_date", "prune", "compact",
                              "target_file_size", "metrics_pushgateway", "metrics_job",
                              "lineage", "lineage_job", "lineage_parent"}
    assert TABLE_OPTIONS == ("table_format", "catalog", "namespace")
    assert set(config().fingerprint()) == fields - set(RESUMABLE)
    changed = config(engine="ray", device="cpu", batch_tokens=4096, batch_docs=16,
                     rows_per_part=10, overwrite=True, storage_options={"anon": True},
                     engine_options={"num_actors": 2})
    assert changed.fingerprint() == config().fingerprint()
    assert config(decoder="viterbi").fingerprint() != config().fingerprint()
    assert config(limit=10).fingerprint() != config().fingerprint()


def test_the_window_settles_from_the_model_unless_given():
    assert (config().with_window(None).max_length, config().with_window(None).stride) == (512, 128)
    assert config(stride=0).with_window(128).stride == 0
    assert config(max_length=100).with_window(256).stride == 25


def test_yaml_options_take_dashes_or_underscores(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("max-length: 256\nid_column: id\ndrop-text: true\n")
    assert load_yaml(path) == {"max_length": 256, "id_column": "id", "drop_text": True}
    assert config(**load_yaml(path)).keep_text is False
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_yaml(path)


def test_the_decoder_settles_from_the_model_unless_given():
    assert config().decoder is None  # the model's recommendation, settled by plan_run
    assert config().with_decoder("viterbi").decoder == "viterbi"
    assert config().with_decoder(None).decoder == "greedy"
    assert config(decoder="greedy").with_decoder("viterbi").decoder == "greedy"
    with pytest.raises(ConfigError, match="recommends the decoder 'crf'") as error:
        config().with_decoder("crf")
    assert "--decoder" in error.value.fix
    # settled before the fingerprint, so asking for the recommendation matches leaving it out
    assert config().with_decoder("viterbi").fingerprint() == \
        config(decoder="viterbi").with_decoder("viterbi").fingerprint()


def test_the_decoder_recommended_by_a_model_is_read_from_its_seqlab_json(ner_model, tmp_path):
    import shutil

    from seqlab.models.metadata import read_metadata, recommended_decoder, write_metadata

    assert recommended_decoder(read_metadata(str(ner_model))) is None
    model = shutil.copytree(ner_model, tmp_path / "model")
    write_metadata(model, read_metadata(str(model)).updated(decoder="viterbi"))
    assert config().with_decoder(recommended_decoder(read_metadata(str(model)))).decoder == \
        "viterbi"


def test_min_score_and_top_k_are_checked_and_change_the_fingerprint():
    assert (config().min_score, config().top_k) == (None, 0)
    assert config(min_score=0.5).fingerprint() != config().fingerprint()
    assert config(top_k=3).fingerprint() != config().fingerprint()
    assert config(min_score=0.0).min_score == 0.0 and config(min_score=1).min_score == 1
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="is not a probability"):
            config(min_score=bad)
    with pytest.raises(ConfigError, match="--top-k must be 0 or more"):
        config(top_k=-1)


def test_min_score_and_top_k_flags_reach_the_config():
    from seqlab.cli.annotate import ENGINE_FLAGS, annotate_options
    from seqlab.cli.main import build_parser

    args = build_parser("annotate").parse_args(["annotate", "in", "out", "--min-score", "0.8",
                                                "--top-k", "3"])
    built = build_config(**annotate_options(args, ENGINE_FLAGS))
    assert (built.min_score, built.top_k, built.decoder) == (0.8, 3, None)


def test_the_default_max_chars_lets_a_book_through(ner_model):
    """A book in one row (the Iliad has 1,060,379 characters) is tagged under the default
    limit, since memory is bounded by the windows; a text over the limit still gets too_long,
    its error naming its length and the limit."""
    import pyarrow as pa
    from transformers import AutoTokenizer

    from seqlab import schema
    from seqlab.stages.tokenize import Tokenizer, WindowSpec

    limit = config().max_chars
    stage = Tokenizer(AutoTokenizer.from_pretrained(ner_model), WindowSpec(64, 16, limit))
    book = ("The city of London said it was a new year for the people. " * 18_000)[:1_060_379]
    batch = pa.RecordBatch.from_pydict({schema.TEXT: [book, "a" * (limit + 1)],
                                        schema.STATUS: [schema.OK] * 2,
                                        schema.ERROR: [None, None]})
    out = stage(batch)
    assert out.column(schema.STATUS).to_pylist() == [schema.OK, schema.TOO_LONG]
    assert out.column(schema.ERROR)[1].as_py() == \
        f"text has {limit + 1} characters, above --max-chars {limit}"
    assert len(out.column(schema.WIN_STARTS)[0]) > 1000  # the book, in windows
