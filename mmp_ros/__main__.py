import sys

from mmp_ros.cli import main

sys.exit(main())
