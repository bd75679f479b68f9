"""Where the package's data folders (``config/``, ``models/``) are.

In a source checkout they sit beside the package. Installed (``colcon build``, a wheel),
setup.py's ``data_files`` put them in ``share/mmp_ros/`` of the install prefix, which the
ament index names when ``AMENT_PREFIX_PATH`` is set (a sourced ROS workspace); a wheel
installed by pip puts them under this interpreter's prefix, where nothing else says so.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

PACKAGE = 'mmp_ros'
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout, when run from one


def share_folders(folder: str) -> list[Path]:
    """Where ``folder`` of the package may be, first match first: share/mmp_ros of the
    ament index, of this interpreter's prefix, then the source tree's."""
    folders = []
    try:
        from ament_index_python.packages import get_package_share_directory

        folders.append(Path(get_package_share_directory(PACKAGE)) / folder)
    except (ImportError, LookupError, KeyError, ValueError, OSError):
        pass  # not installed as a ROS package (OSError: AMENT_PREFIX_PATH unset)
    folders.append(Path(sysconfig.get_path('data')) / 'share' / PACKAGE / folder)
    folders.append(SOURCE_ROOT / folder)
    return list(dict.fromkeys(folders))


def share_file(folder: str, name: str) -> Path:
    """``folder/name`` in the first of :func:`share_folders` that holds it; the source
    tree's path when none does (an error then names where it was expected)."""
    for path in (f / name for f in share_folders(folder)):
        if path.is_file():
            return path
    return SOURCE_ROOT / folder / name
