"""``python -m mixerkern.build``: compile the C++ kernels now (verbosely) and report the backends."""
import json
import os

if __name__ == "__main__":
    os.environ["MIXERKERN_REQUIRE_COMPILED"] = "1"  # a failed build must be an error here, not a fallback
    from mixerkern import _extension

    print("built:", _extension.load(verbose=True))
    import mixerkern

    print(json.dumps(mixerkern.backend_info(), indent=2))
