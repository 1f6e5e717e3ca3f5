"""What a report records about the machine: Python, package versions, CPU and GPU."""

from __future__ import annotations

import importlib
import os
import platform

__all__ = ["environment_info", "PACKAGES"]

#: The packages whose versions a report records: display name -> module name.
PACKAGES = {
    "numpy": "numpy",
    "scikit-learn": "sklearn",
    "scikit-image": "skimage",
    "opencv": "cv2",
    "torch": "torch",
    "torchvision": "torchvision",
    "classicvision": "classicvision",
}


def _version(module_name: str) -> str | None:
    try:
        mod = importlib.import_module(module_name)
    except Exception:
        return None
    return str(getattr(mod, "__version__", None) or "unknown")

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"

def environment_info() -> dict:
    """Python and package versions, CPU model and core count, GPU name (or None)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    gpu = None
    try:  # torch imported here only: a report of classic runs alone does not need it loaded
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        gpu = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(mod) for name, mod in PACKAGES.items()},
        "cpu": {"model": _cpu_model(), "count": os.cpu_count(), "usable": usable},
        "gpu": gpu,
    }
