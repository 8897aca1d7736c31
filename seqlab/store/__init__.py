"""Where runs land: layout and part names, atomic parts, output state, incremental tables, Iceberg, warehouse DDL."""
