"""SDLS (355.0-B-2): security associations, suites, header/trailer layout, apply/process."""
