"""``python -m mixerkern.build``: compile the C++ kernels now, showing the compiler, and report.

``python -m`` imports the package first, which already tries the build quietly. When that failed,
torch's loader would not rebuild the same sources again in this process (it would load the stale
library, if any): so ninja is rerun here verbosely, the compiler's errors are shown, and the
command fails. Otherwise the (verbose, cached) build is repeated and the backends are reported.
"""
import json
import os
import subprocess
import sys

if __name__ == "__main__":
    os.environ["MIXERKERN_BUILD_VERBOSE"] = "1"
    from mixerkern import _extension, backend_info

    if backend_info()["cpu_load_error"]:
        failed = subprocess.run(["ninja", "-v"], cwd=_extension.build_dir()).returncode != 0
        print(json.dumps(backend_info(), indent=2))
        sys.exit("mixerkern: the C++ build failed (the compiler's output is above)" if failed else
                 "mixerkern: the kernels are built now; this process had already fallen back. Run again to confirm.")
    print("built:", _extension.load())
    print(json.dumps(backend_info(), indent=2))
