"""Fuzzing kit: hypothesis strategies and mutators for every structure of the library."""
