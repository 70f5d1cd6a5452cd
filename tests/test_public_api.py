"""The public API: every name in ``sdls_qkd.__all__`` resolves, and importing is cheap."""

from __future__ import annotations

import subprocess
import sys

import sdls_qkd


def test_every_exported_name_resolves_to_its_defining_object() -> None:
    from sdls_qkd.security import engine
    from sdls_qkd.store import sqlite

    for name in sdls_qkd.__all__:
        assert getattr(sdls_qkd, name) is not None, name
    assert sdls_qkd.process_security is engine.process_security
    assert sdls_qkd.SqliteStore is sqlite.SqliteStore
    assert sdls_qkd.load_vectors.__name__ == "load"


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        sdls_qkd.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_pull_in_heavy_layers() -> None:
    code = ("import sys, sdls_qkd; sdls_qkd.TmFrame; "
            "print(sorted(m for m in ('numpy', 'sqlite3', 'ssl', 'http.server', 'hypothesis') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
