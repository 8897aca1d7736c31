"""Where runs land: layout and part names, atomic parts, the manifest and run state, the
output's state, incremental tables, Iceberg commits, warehouse DDL."""
