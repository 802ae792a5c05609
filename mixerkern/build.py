"""``python -m mixerkern.build``: compile the C++ kernels now, showing the compiler, and report.

(``python -m`` imports the package first, which already tries the build quietly; this then
repeats it verbosely so that any compiler error is shown and the command fails.)
"""
import json
import os

if __name__ == "__main__":
    os.environ["MIXERKERN_BUILD_VERBOSE"] = "1"
    from mixerkern import _extension, backend_info

    print("built:", _extension.load())
    info = backend_info()
    if info["cpu_load_error"]:
        print("The kernels are built now; this process had already fallen back. Run again to confirm.")
    print(json.dumps(info, indent=2))
