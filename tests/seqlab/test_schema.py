import pyarrow as pa
import pytest

from seqlab import schema
from seqlab.errors import ConfigError


def test_passthrough_types_become_warehouse_safe():
    passthrough = pa.schema([
        ("a", pa.large_string()), ("b", pa.uint64()), ("c", pa.dictionary(pa.int8(), pa.string())),
        ("d", pa.timestamp("ns", tz="UTC")), ("e", pa.large_list(pa.uint8())),
    ])
    docs = schema.documents_schema(passthrough)
    types = {f.name: f.type for f in docs}
    assert types["a"] == pa.string() and types["b"] == pa.int64() and types["c"] == pa.string()
    assert types["d"] == pa.timestamp("us", tz="UTC") and types["e"] == pa.list_(pa.int64())
    with pytest.raises(ConfigError, match="map"):
        schema.warehouse_type(pa.map_(pa.string(), pa.int32()))


def test_landed_schemas_use_only_warehouse_types():
    def check(type_):
        assert not pa.types.is_unsigned_integer(type_)
        assert not pa.types.is_large_string(type_) and not pa.types.is_dictionary(type_)
        assert not pa.types.is_map(type_) and not pa.types.is_float32(type_)
        if pa.types.is_timestamp(type_):
            assert type_ == schema.TIMESTAMP
        if pa.types.is_list(type_):
            assert not type_.value_field.nullable
            check(type_.value_type)
        if pa.types.is_struct(type_):
            for field in type_:
                check(field.type)

    for table in (schema.documents_schema(pa.schema([])), schema.MENTIONS, schema.AGGREGATES):
        for field in table:
            check(field.type)


def test_reserved_names_are_refused():
    with pytest.raises(ConfigError, match="status"):
        schema.check_passthrough(["title", "status"])
