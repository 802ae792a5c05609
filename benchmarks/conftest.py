"""pytest plumbing of the benchmark suite: thread-count reset and the end-of-session summary table.

Run: ``pytest benchmarks/ --benchmark-only`` (see RESULTS.md). The summary is printed at the end
and written to .benchmarks/summary.md and .benchmarks/summary.json.
"""
from __future__ import annotations

import pytest
import torch

from . import _common, _summary


@pytest.fixture(autouse=True)
def _restore_num_threads():
    """Tests set their own thread count; never let it leak into the next test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def pytest_runtest_logreport(report):
    test_id = report.nodeid.split("::")[-1]
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message.splitlines()[0] if crash and crash.message else report.outcome
        _common.FAILURES.append(f"{test_id} ({report.when}): {message}")
    elif report.skipped and isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
        _common.SKIPPED.append(f"{test_id}: {report.longrepr[2].removeprefix('Skipped: ')}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # Runs before pytest-benchmark's own sessionfinish saves its JSON, so the speedups land in it too.
    if _common.ROWS:
        _summary.add_speedups(_common.ROWS)
    return (yield)


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not (_common.ROWS or _common.FAILURES or _common.SKIPPED or _common.PIPELINE):
        return
    text, path = _summary.write(_common.ROWS, _common.FAILURES, config.rootpath / ".benchmarks")
    terminalreporter.write_sep("=", "mixerkern benchmark summary")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"(also written to {path} and summary.json)")
