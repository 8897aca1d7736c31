"""Parts read back whole: the process that read them still exits cleanly."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def test_a_process_that_read_a_part_exits_cleanly(tmp_path):
    # pq.read_table on an fsspec file left pyarrow dataset threads behind that aborted the
    # interpreter at exit, most times ("terminate called without an active exception", exit
    # code 134), after `seqlab runs` had printed its table: tried a few times
    path = tmp_path / "files.parquet"
    pq.write_table(pa.table({"identity": ['[6342, "1796488022.3"]'] * 3,
                             "superseded": [False] * 3}), path)
    code = ("import fsspec\nfrom seqlab.store.parts import read_table\n"
            f"table = read_table(fsspec.filesystem('file'), {str(path)!r})\n"
            "print(table.column('identity').to_pylist())\n")
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("6342") == 3
