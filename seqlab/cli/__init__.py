"""The command line: thin commands over the library, the shared flags, terminal progress."""
