"""CMakeLists.txt builds the same csrc/ sources: the micro-kernel unit tests and the op library, run by ctest."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_build_and_ctest(tmp_path):
    build = tmp_path / "build"
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=900)  # noqa: E731
    steps = [("cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"),
             ("cmake", "--build", str(build), "-j2"),
             ("ctest", "--test-dir", str(build), "--output-on-failure")]
    for cmd in steps:
        result = run(*cmd)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "100% tests passed" in result.stdout
    assert "all micro-kernel tests passed" in subprocess.run(
        [str(build / "test_microkernels")], capture_output=True, text=True).stdout
