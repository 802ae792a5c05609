"""Pure-Python packaging. The C++ kernels in csrc/ are built by torch's JIT extension loader
(ninja, cached) the first time mixerkern is imported, or ahead of time with
`python -m mixerkern.build`; see mixerkern/_extension.py."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mixerkern", "mixerkern.*"]) + ["mixerkern._csrc"],
    # Ship the C++ sources inside the package too, so a non-editable install can still build them.
    package_dir={"mixerkern._csrc": "csrc"},
    package_data={"mixerkern._csrc": ["*.h", "*.cpp", "cpu/*.h", "cpu/*.cpp"]},
)
