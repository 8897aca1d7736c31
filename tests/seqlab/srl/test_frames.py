from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from seqlab import schema
from seqlab.srl.frames import frame_rows
from seqlab.srl.tag import FrameWords
from seqlab.stages.flatten import frames
from seqlab.stages.tokens import Provenance


def test_frames_hold_offsets_into_the_text_and_leave_out_the_predicate_span():
    text = "John Smith said the bank was in Paris ."
    starts = np.array([0, 5, 11, 16, 20, 25, 29, 32, 38])
    ends = np.array([4, 10, 15, 19, 24, 28, 31, 37, 39])
    said = FrameWords(starts, ends, ["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1", "I-ARG1",
                                     "I-ARG1", "I-ARG1", "O"],
                      np.array([0.9, 0.7, 1.0, 0.8, 0.8, 0.6, 0.6, 0.6, 0.99]))
    rows = frame_rows(text, [(11, 15, 0.97), (25, 28, 0.5)], [said, None])
    assert len(rows) == 1 and rows[0]["frame"] == 0
    predicate = rows[0]["predicate"]
    assert text[predicate["start_char"]:predicate["end_char"]] == "said"
    roles = [(a["role"], a["text"]) for a in rows[0]["arguments"]]
    assert roles == [("ARG0", "John Smith"), ("ARG1", "the bank was in Paris")]
    assert all(text[a["start_char"]:a["end_char"]] == a["text"] for a in rows[0]["arguments"])
    assert abs(rows[0]["arguments"][0]["score"] - 0.8) < 1e-9
    provenance = Provenance("run", "srl", "rev", datetime.now(timezone.utc)).columns(2)
    documents = pa.table({schema.DOC_ID: ["d1", "d2"],
                          schema.FRAMES_COLUMN: pa.array([rows, None], schema.FRAMES_TYPE),
                          **provenance})
    table = frames(documents)
    assert table.schema == schema.FRAMES and table.num_rows == 1
    assert table.column(schema.DOC_ID).to_pylist() == ["d1"]
    assert table.column("arguments").to_pylist()[0][1]["role"] == "ARG1"
    other = frames(documents, model=("srl2", "r2"))
    assert other.column("model").to_pylist() == ["srl2"]
    assert frames(documents.slice(1)).num_rows == 0
